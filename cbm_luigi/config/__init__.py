"""Configuration: the one reader of luigi.cfg, ``.env`` and the environment.

- :mod:`.settings`: the ``[cbm]`` section as a frozen :class:`Settings` (source, target, cache, batch sizes).
- :mod:`.options`: the typed operations sections (``[cbm_ops]``, ``[cbm_quality]``, ``[cbm_alerts]``).
- :mod:`.secrets`: hiding passwords, tokens and webhook signatures in any text.
- :mod:`.run`: the run id of this process.
- :mod:`.logs`: logging of the entry points (redacting formatter, per-run log files).

Precedence everywhere: environment > ``.env`` > luigi.cfg > default; ``${NAME}`` in a value is expanded from
the environment.  Nothing else in the package reads luigi.cfg or ``os.environ`` for a setting.
"""

from __future__ import annotations

from cbm_luigi.config.options import cbm_option
from cbm_luigi.config.run import RUN_ID
from cbm_luigi.config.secrets import redact, redact_text
from cbm_luigi.config.settings import Settings, expand_env, load_dotenv_once, load_settings

__all__ = ["RUN_ID", "Settings", "cbm_option", "expand_env", "load_dotenv_once", "load_settings", "redact",
           "redact_text"]
