"""Task runners from config: threads, or one process pool shared by a campaign and all its rounds."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from conf.schema import RunnerConfig

RUNNERS = ("threads", "processes")


class SharedProcessPool(ProcessPoolTaskRunner):
    """A process pool that the campaign flow run and every round subflow run share.

    Prefect gives each (sub)flow run a fresh copy of its task runner, so a plain process pool would spawn
    workers, import the stack and load the MLIP again in every round. This runner hands out itself instead
    of a copy and starts its workers on the first ``__enter__`` and stops them on the last ``__exit__``, so
    workers (and the model each one loaded) live for the whole campaign.
    """

    # what a running pool holds that cannot (and need not) travel to another process
    _RUNTIME_STATE = ("_executor", "_resolver_executor", "_subprocess_message_queue", "_message_forwarding_thread",
                      "_cached_env", "_cached_env_settings")

    def duplicate(self) -> SharedProcessPool:
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickle as a cold runner: flow contexts sent to workers reference it, its queue must stay here."""
        state = dict(self.__dict__)
        state.update({key: None for key in self._RUNTIME_STATE})
        state.update(_cancel_events={}, _depth=0, _started=False)
        return state

    def __enter__(self) -> SharedProcessPool:
        depth = getattr(self, "_depth", 0)
        if depth == 0:
            super().__enter__()
        self._depth = depth + 1
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self._depth = getattr(self, "_depth", 1) - 1
        if self._depth == 0:
            super().__exit__(exc_type, exc_value, traceback)


def make_task_runner(cfg: RunnerConfig):
    """The task runner named by ``cfg.kind`` (one of :data:`RUNNERS`)."""
    if cfg.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.max_workers)
    if cfg.kind == "processes":
        return SharedProcessPool(max_workers=cfg.max_workers)
    raise ValueError(f"unknown task runner {cfg.kind!r}; allowed: {', '.join(RUNNERS)}")
