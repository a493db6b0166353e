"""``validate``, ``profile``, ``dq``: does the ODS match the source, what do the columns hold, do rules pass.

    cbm-etl validate --filter all                 # all | dimensions | facts | critical (active tables)
    cbm-etl validate --tables produit,client      # named tables
    cbm-etl profile produit [--apply] [--source]  # column figures and suggested exclusions
    cbm-etl dq produit [--batch B] [--mode full]  # the table's data-quality rules on its last extract

Exit codes: 0 when everything matches / passes (``behind`` and DQ warnings included), 1 when a table does not
match or a critical rule fails, 2 for a configuration error (from the CLI).  Reports are written under
``reports/validation``, ``reports/profiling`` and ``reports/dq`` (``CBM_REPORTS_DIR``).
"""

from __future__ import annotations

import argparse
from typing import Any

from cbm_luigi.commands.setup import print_table
from cbm_luigi.errors import ConfigError
from cbm_luigi.model.specs import TABLE_FILTERS


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="compare the ODS with the source: row counts, keys, content (hashdiff)")
    p.add_argument("--filter", choices=TABLE_FILTERS, default="all", help="which active tables (default all)")
    p.add_argument("--tables", help="comma-separated table names (instead of --filter)")
    p.add_argument("--sample", type=int, default=10, help="sample keys shown per kind of difference (default 10)")
    p.add_argument("--no-column-diff", action="store_true",
                   help="do not re-read the sample rows to name the columns that differ")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML/CSV/JSON report")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("profile", help="profile a table's columns: NULLs, empties, distinct, min/max, widths")
    p.add_argument("table")
    p.add_argument("--apply", action="store_true", help="exclude the suggested columns (IsExcluded, with a note)")
    p.add_argument("--source", action="store_true",
                   help="read the source (full SELECT) even when a full extract is in the cache")
    p.add_argument("--width-warn-pct", type=float, default=90.0,
                   help="flag columns whose longest value reaches this %% of the declared width (default 90)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("dq", help="run a table's data-quality rules against its last extract")
    p.add_argument("table")
    p.add_argument("--batch", help="the extract of this batch (default: the newest)")
    p.add_argument("--mode", choices=("full", "incremental"), help="only extracts of this mode")
    p.add_argument("--rules", help="rules file (default: <dq dir>/<table>.yaml|.yml|.json)")
    p.set_defaults(func=cmd_dq)


def cmd_validate(args: argparse.Namespace) -> int:
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.ops import validation  # deferred: start-up of cbm-etl
    from cbm_luigi.store.config_tables import MetadataStore  # deferred: start-up of cbm-etl

    s = load_settings()
    store = MetadataStore(open_target(s.target))
    tables = [t.strip() for t in (args.tables or "").split(",") if t.strip()]
    names = validation.select_tables(store, args.filter, tables or None)
    scope = f"tables {', '.join(names)}" if tables else f"filter {args.filter}"
    if not names:
        print(f"validate: no table to validate ({scope})")
        return 0
    results = validation.run_validation(names, sample=max(args.sample, 0), column_diff=not args.no_column_diff,
                                        settings=s)
    print_table(("table", "status", "source rows", "ODS rows", "missing", "extra", "mismatched", "pending",
                 "seconds"),
                [(r.table, r.status.upper() if r.status in ("mismatch", "error") else r.status, r.source_rows,
                  r.target_rows, r.missing, r.extra, r.mismatched, r.pending, f"{r.seconds:.1f}") for r in results])
    for r in results:
        if r.status in ("mismatch", "error"):
            print(f"  {r.table}: {r.summary()}")
    if not args.no_report:
        print(f"report: {validation.write_report(results, scope).describe()}")
    return 1 if any(r.status in ("mismatch", "error") for r in results) else 0


def cmd_profile(args: argparse.Namespace) -> int:
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.ops import profiling  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import clear_caches  # deferred: start-up of cbm-etl

    s = load_settings()
    profile = profiling.profile_table(args.table, from_source=args.source, width_warn_pct=args.width_warn_pct,
                                      settings=s)
    print(f"{profile.table}: {profile.rows:,} rows, {len(profile.columns)} columns; data: {profile.origin_detail}")
    print_table(("column", "type", "null %", "empty %", "distinct", "max len/width", "flags", "suggestion"),
                [(c.column_name, c.logical_type, c.null_pct, c.empty_pct if c.empty_pct is not None else "",
                  c.distinct, f"{c.max_length}/{c.declared_width or '-'}" if c.max_length is not None else "",
                  " ".join(c.flags), c.suggestion or "") for c in profile.columns])
    applied: list[str] = []
    if args.apply:
        applied = profiling.apply_suggestions(profile, settings=s)
        clear_caches()
        if applied:
            print(f"excluded {len(applied)} column(s): {', '.join(applied)} (IsExcluded = 1, note added). "
                  "The next load rewrites every row of the table (the hashdiff covers the loaded columns).")
        else:
            print("nothing to exclude")
    elif profile.suggestions:
        print(f"suggested exclusions: {', '.join(c.column_name for c in profile.suggestions)} "
              f"(apply with: cbm-etl profile {profile.table} --apply)")
    print(f"report: {profiling.write_report(profile, applied).describe()}")
    return 0


def no_rules_file(table: str, folder: Any) -> str:
    """The message for a table without a rules file: where it was looked for, and the example to start from."""
    from pathlib import Path  # deferred: start-up of cbm-etl

    examples = Path(__file__).resolve().parents[2] / "docs" / "examples" / "data_quality"
    own = next((p for p in sorted(examples.glob("*.y*ml")) if p.stem.lower() == table.lower()), None)
    example = own or examples / "produit.yaml"
    if example.is_file():
        if example.is_relative_to(Path.cwd()):
            example = example.relative_to(Path.cwd())
        start = (f"start from the example: mkdir -p {folder} && cp {example} {Path(folder) / f'{table}.yaml'}"
                 + ("" if own else " and adapt it") + f" (or CBM_DQ_DIR={example.parent} to use the examples as "
                 "they are)")
    else:
        start = "start from docs/examples/data_quality/produit.yaml of the cbm-luigi repository"
    return (f"table {table}: no rules file {table}.yaml (or .yml, .json) in {folder} (CBM_DQ_DIR, or luigi.cfg "
            f"[cbm_quality] dq_dir); {start}, or give --rules FILE; rules schema: docs/VALIDATION.md")


def cmd_dq(args: argparse.Namespace) -> int:
    from pathlib import Path  # deferred: start-up of cbm-etl

    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.ops import profiling, quality  # deferred: start-up of cbm-etl
    from cbm_luigi.store.config_tables import MetadataStore  # deferred: start-up of cbm-etl

    s = load_settings()
    target = open_target(s.target)
    spec = MetadataStore(target).table_spec(args.table)
    # the rules file first: a configuration the operator can fix now, before looking for an extract
    path = Path(args.rules) if args.rules else quality.rules_file(spec)
    if path is None:
        raise ConfigError(no_rules_file(spec.table_name, quality.dq_dir()))
    extracts = profiling.find_extracts(s.cache_dir, spec, mode=args.mode)
    if args.batch:
        extracts = [(d, m) for d, m in extracts if m.batch == args.batch]
    if not extracts:
        what = f"batch {args.batch}" if args.batch else "any batch"
        raise ConfigError(f"table {spec.table_name}: no extract of {what} in the cache {s.cache_dir}; "
                          f"run: cbm-etl run {spec.table_name} (or check CBM_CACHE_DIR)")
    folder, manifest = extracts[0]
    run = quality.run_rules(target, spec, manifest, manifest.paths(folder), path)
    print(f"{spec.table_name}: rules {path} on extract {folder.name} ({manifest.rows:,} rows)")
    print_table(("rule", "type", "column", "severity", "result", "observed"),
                [(r.rule.name, r.rule.type, r.column or "", r.severity, r.status.upper() if not r.passed else
                  r.status, r.observed) for r in run.results])
    for r in run.critical_failures + run.warnings:
        for sample in r.samples[:3]:
            print(f"  {r.rule.name}: " + ", ".join(f"{k}={v!r}" for k, v in sample.items()))
    print(f"report: {quality.write_report(run).describe()}")
    return 1 if run.critical_failures else 0
