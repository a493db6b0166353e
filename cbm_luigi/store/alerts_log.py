"""``etl.ETL_Alerts``: one row per alert sent, per channel and table; read back to avoid re-sending an alert.

Best effort: the target may be what is down, so callers log a failure here and go on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from cbm_luigi.config.secrets import redact_text, secret_values
from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.store.schema import ETL_ALERTS, ETL_LOG


class AlertRecord(Protocol):
    """What the log needs of an alert (``cbm_luigi.alerts.notify.Alert``)."""

    @property
    def alert_type(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def tables(self) -> tuple[str, ...]: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def title(self) -> str: ...

    def plain_text(self, limit: int) -> str: ...


class DeliveryRecord(Protocol):
    """What the log needs of one channel's delivery (``cbm_luigi.alerts.notify.Delivery``)."""

    @property
    def channel(self) -> str: ...
    @property
    def delivered(self) -> bool: ...
    @property
    def note(self) -> str: ...


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp as the drivers return it (a datetime, or its ISO text) as a datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def failure_alerted_sql(d: Dialect) -> str:
    """The latest alert of type ``:a`` about table ``:t``, delivered (``:true``) since ``:since`` by a run other
    than ``:r`` that logged a ``:failed`` row of that table in batch ``:b`` (etl.ETL_Log): its RunId and SentTs."""
    q = d.quote
    a, lg = q("a"), q("l")  # quoted aliases: a three-part column name is deprecated on SQL Server
    alerts, runs = d.qualified(ETL_ALERTS.schema, ETL_ALERTS.name), d.qualified(ETL_LOG.schema, ETL_LOG.name)
    return (f"SELECT {a}.{q('RunId')}, {a}.{q('SentTs')} FROM {alerts} {a} "
            f"WHERE {a}.{q('AlertType')} = :a AND {a}.{q('TableName')} = :t "
            f"AND {a}.{q('SentTs')} >= :since AND {a}.{q('RunId')} <> :r AND {a}.{q('Delivered')} = :true "
            f"AND EXISTS (SELECT 1 FROM {runs} {lg} WHERE {lg}.{q('RunId')} = {a}.{q('RunId')} "
            f"AND {lg}.{q('TableName')} = :t AND {lg}.{q('Batch')} = :b AND {lg}.{q('Status')} = :failed) "
            f"ORDER BY {a}.{q('SentTs')} DESC")


class AlertLog:
    """Reads and writes etl.ETL_Alerts (best effort: the target may be what is down)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.d = target.dialect
        self.table = self.d.qualified(ETL_ALERTS.schema, ETL_ALERTS.name)

    def record(self, alert: AlertRecord, deliveries: Sequence[DeliveryRecord], when: datetime | None = None) -> None:
        q = self.d.quote
        cols = [c.name for c in ETL_ALERTS.columns]
        sql = (f"INSERT INTO {self.table} ({', '.join(q(c) for c in cols)}) "
               f"VALUES ({', '.join(':' + c for c in cols)})")
        ts = (when or datetime.now()).replace(microsecond=0)
        # no secret is ever stored: a webhook's reply quoting its URL, a password in an error (config/secrets.py)
        secrets = secret_values()
        message = redact_text(alert.plain_text(1500), secrets)[:4000]
        title = redact_text(alert.title, secrets)[:400]
        rows = [{
            "AlertId": str(uuid.uuid4()), "AlertType": alert.alert_type, "Severity": alert.severity,
            "TableName": t, "RunId": alert.run_id, "Channel": d.channel[:32], "Title": title,
            "Message": message, "Delivered": d.delivered, "DeliveryNote": redact_text(d.note, secrets)[:400],
            "SentTs": ts,
        } for d in deliveries for t in (alert.tables or (None,))]
        if rows:
            with self.target.begin() as conn:
                conn.execute(sql, rows)

    def failure_alerted_by_another_run(self, alert_type: str, *, table: str, batch: str, since: datetime,
                                       run_id: str) -> tuple[str, datetime] | None:
        """(run id, when) of the latest ``alert_type`` alert about ``table`` delivered since ``since`` by another run
        that logged a failure of ``table`` in ``batch`` (etl.ETL_Log), or None: the same failure alerted by another
        host (or process) of the same batch while this run was running.  One that reached no channel does not
        count: then nobody was told."""
        row = self.target.fetchone(
            failure_alerted_sql(self.d),
            {"a": alert_type, "t": table, "since": since, "r": run_id, "true": True, "b": batch, "failed": "failed"})
        if not row:
            return None
        sent = _as_datetime(row[1])
        assert sent is not None  # SentTs is NOT NULL
        return str(row[0]), sent

    def last_sent(self, alert_type: str, *, table: str | None = None, severity: str | None = None,
                  run_id: str | None = None, since: datetime | None = None, delivered_only: bool = True
                  ) -> datetime | None:
        """When an alert like this was last recorded (delivered, by default), or None."""
        q = self.d.quote
        where = [f"{q('AlertType')} = :a"]
        params: dict[str, Any] = {"a": alert_type}
        for col, key, value in (("TableName", "t", table), ("Severity", "s", severity), ("RunId", "r", run_id),
                                ("SentTs", "since", since)):
            if value is not None:
                where.append(f"{q(col)} {'>=' if key == 'since' else '='} :{key}")
                params[key] = value
        if delivered_only:
            where.append(f"{q('Delivered')} = :true")
            params["true"] = True
        row = self.target.fetchone(f"SELECT MAX({q('SentTs')}) FROM {self.table} WHERE {' AND '.join(where)}",
                                   params)
        return _as_datetime(row[0] if row else None)
