"""SQL-safe naming, settings precedence and validation, lookback parsing, secret redaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cbm_luigi.config.secrets import redact
from cbm_luigi.config.settings import load_settings
from cbm_luigi.errors import ConfigError, MetadataError
from cbm_luigi.model.batch import default_batch, validate_batch
from cbm_luigi.model.naming import assign_safe_names, match_name, sql_safe
from cbm_luigi.model.specs import default_priority, parse_lookback
from cbm_luigi.tasks.context import clear_caches


def test_sql_safe_replaces_progress_characters() -> None:
    assert sql_safe("gencod-v") == "gencod_v"
    assert sql_safe("tel#") == "tel_"
    assert sql_safe("taux$") == "taux_"
    assert sql_safe("remise%") == "remise_"
    assert sql_safe("note&comment") == "note_comment"
    assert sql_safe("order-line") == "order_line"
    assert sql_safe("1st-col") == "c_1st_col"


def test_clashes_resolved_deterministically_and_reported() -> None:
    names, clashes = assign_safe_names(["gencod-v", "gencod_v", "GENCOD#V", "hashdiff"])
    # the name that is already safe keeps it, whatever the source order; case-insensitive clash detection
    assert names == {"gencod-v": "gencod_v_2", "gencod_v": "gencod_v", "GENCOD#V": "GENCOD_V_3",
                     "hashdiff": "hashdiff_2"}
    assert [c.source_name for c in clashes] == ["hashdiff", "gencod-v", "GENCOD#V"]
    again, _ = assign_safe_names(["gencod-v", "gencod_v", "GENCOD#V", "hashdiff"])
    assert again == names


def test_names_match_in_either_form_case_insensitively() -> None:
    pairs = [("Order-Line", "Order_Line"), ("client", "client")]
    assert match_name("order-line", pairs) == "Order-Line"
    assert match_name("ORDER_LINE", pairs) == "Order-Line"
    assert match_name("fournis", pairs) is None


def test_lookback_parsing() -> None:
    assert parse_lookback("1d") == timedelta(days=1)
    assert parse_lookback("12h") == timedelta(hours=12)
    assert parse_lookback(" 30m ") == timedelta(minutes=30)
    assert parse_lookback("0d") == timedelta(0)
    assert parse_lookback(None) == timedelta(0)
    with pytest.raises(MetadataError, match="LookbackInterval '1w'"):
        parse_lookback("1w")


def test_priority_defaults_from_notes_and_flags() -> None:
    assert default_priority("Table CRITIQUE pour la paie", False, True) == "critical"
    assert default_priority(None, True, False) == "high"
    assert default_priority("", False, True) == "normal"


def test_environment_wins_over_dotenv_and_luigi_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cbm_luigi.config.settings as config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "luigi.cfg").write_text("[cbm]\nsource_schema=FROMCFG\nsource_flavor=postgresql\n"
                                        "target=duckdb:///cfg.duckdb\n")
    (tmp_path / ".env").write_text("CBM_SOURCE_SCHEMA=FROMDOTENV\nCBM_PW=s3cret\n"
                                   "CBM_SOURCE=DSN=erp;PWD=${CBM_PW}\n")
    import luigi.configuration

    monkeypatch.setattr(config, "_dotenv_loaded", False)
    luigi.configuration.get_config().read(str(tmp_path / "luigi.cfg"))
    monkeypatch.delenv("CBM_CACHE_DIR")
    try:
        s = load_settings()
        assert s.source_schema == "FROMDOTENV"  # .env over luigi.cfg
        assert s.source_flavor == "postgresql"  # luigi.cfg over the default
        assert s.source == "DSN=erp;PWD=s3cret"  # ${NAME} expanded
        assert s.cache_dir == Path("data/cache/parquet")
        monkeypatch.setenv("CBM_SOURCE_SCHEMA", "FROMENV")
        assert load_settings().source_schema == "FROMENV"  # environment over .env
    finally:
        cfg = luigi.configuration.get_config()
        cfg.remove_section("cbm")
        for k in ("CBM_SOURCE_SCHEMA", "CBM_PW", "CBM_SOURCE"):
            monkeypatch.delenv(k, raising=False)
        clear_caches()


def test_bad_settings_name_the_setting_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBM_SOURCE_FLAVOR", "oracle")
    with pytest.raises(ConfigError, match="CBM_SOURCE_FLAVOR='oracle'.*progress, postgresql, sqlite"):
        load_settings()
    monkeypatch.setenv("CBM_SOURCE_FLAVOR", "progress")
    monkeypatch.setenv("CBM_TARGET", "postgresql://u:${CBM_MISSING_PW}@h/db")
    with pytest.raises(ConfigError, match=r"\$\{CBM_MISSING_PW\}.*export CBM_MISSING_PW"):
        load_settings()
    monkeypatch.setenv("CBM_TARGET", "duckdb:///x.duckdb")
    monkeypatch.setenv("CBM_EXTRACT_BATCH_ROWS", "lots")
    with pytest.raises(ConfigError, match="CBM_EXTRACT_BATCH_ROWS must be a whole number"):
        load_settings()


def test_batch_keys() -> None:
    assert validate_batch("2026-11-25T14") == "2026-11-25T14"
    assert validate_batch("nightly_v2.1:a") == "nightly_v2.1:a"
    with pytest.raises(ConfigError, match="not valid"):
        validate_batch("2026 11 25")
    with pytest.raises(ConfigError):
        validate_batch("x'; DROP TABLE t;--")
    now = datetime(2026, 11, 25, 14, 5)
    assert default_batch("day", now) == "2026-11-25"
    assert default_batch("hour", now) == "2026-11-25T14"


def test_redact_hides_passwords() -> None:
    assert redact("DRIVER={X};UID=u;PWD=p@ss;HOST=h") == "DRIVER={X};UID=u;PWD=***;HOST=h"
    assert redact("Password={a;b};X=1") == "Password=***;X=1"
    assert redact("mssql+pyodbc://etl:s3cr3t@host/db") == "mssql+pyodbc://etl:***@host/db"
    assert "s3cr3t" not in redact("postgresql+psycopg://etl:s3cr3t@127.0.0.1/ods")
    two = redact("from postgresql://a:one@h1/x to mssql+pyodbc://b:two@h2/y")
    assert two == "from postgresql://a:***@h1/x to mssql+pyodbc://b:***@h2/y"
    assert redact("http://host/path@x") == "http://host/path@x"  # no user:password before the @
    long_error = "x://u:" * 5000 + "postgresql://etl:hidden@db/ods"
    assert redact(long_error).endswith("postgresql://etl:***@db/ods")
