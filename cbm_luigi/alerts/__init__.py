"""Alerts to Microsoft Teams and e-mail: what is said (:mod:`.message`), how it looks (:mod:`.cards`), where it
goes (:mod:`.channels`), and who sends what when (:mod:`.notify`: the failure alert of a task, the test alert).
Settings are read by ``cbm_luigi.config.alerts``; what was sent is recorded by ``cbm_luigi.store.alerts_log``.
"""
