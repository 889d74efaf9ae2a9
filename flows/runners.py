"""Task runners from config: threads, one process pool shared by a campaign and all its rounds, or Dask
workers running as SLURM jobs (prefect-dask + dask-jobqueue)."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from conf.schema import RunnerConfig
from tasks.workers import skip_exit_collection

RUNNERS = ("threads", "processes", "dask-slurm")


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
        return SharedProcessPool(max_workers=cfg.max_workers, initializer=skip_exit_collection)
    if cfg.kind == "dask-slurm":
        return dask_slurm_runner(cfg.dask_slurm)
    raise ValueError(f"unknown task runner {cfg.kind!r}; allowed: {', '.join(RUNNERS)}")


def dask_slurm_runner(cfg):
    """A ``DaskTaskRunner`` on a ``dask_jobqueue.SLURMCluster`` with adaptive scaling (without adapt or
    n_workers no job would ever be submitted). Worker jobs inherit PREFECT_API_URL through sbatch's exported
    environment, so their task runs report to the campaign's server."""
    import sys

    from prefect_dask import DaskTaskRunner

    kwargs: dict[str, Any] = {"cores": cfg.cores, "processes": cfg.processes, "memory": cfg.memory,
                              "walltime": cfg.walltime, "python": cfg.python or sys.executable,
                              "job_extra_directives": list(cfg.job_extra), "job_script_prologue": list(cfg.prologue)}
    optional = {"queue": cfg.partition, "account": cfg.account, "interface": cfg.interface,
                "log_directory": str(cfg.log_directory) if cfg.log_directory else None}
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster", cluster_kwargs=kwargs,
                          adapt_kwargs={"minimum": cfg.minimum, "maximum": cfg.maximum})
