"""Generator training as a Prefect flow: one long task, epochs logged to the run."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from conf.training import TrainRunConfig


@task(name="train-generator", task_run_name="train-{run.generator}")
def train_task(run: TrainRunConfig, resume: bool) -> str:
    from tasks.train import describe_epoch, train_model

    logger = get_run_logger()

    def log_epoch(record: dict) -> None:
        due = record["epoch"] % max(1, run.train.checkpoint_every) == 0 or record["epoch"] == run.train.epochs
        if due or "restart" in record:
            logger.info(describe_epoch(record))

    return str(train_model(run, resume=resume, log_epoch=log_epoch))


@flow(name="matloop-train-generator")
def train_generator(run: TrainRunConfig, resume: bool = False) -> str:
    """Train (or resume training of) a generator; returns the checkpoint path."""
    return train_task(run, resume)
