"""Distribution: the clip catalog, the coordinator that schedules clips over Ray actors (retries,
escalation, warm-start donors, snapshots), the worker actor that trains, the run's report
(`report`) and the lock that keeps one coordinator per library. The command is `factory/run.py`."""
