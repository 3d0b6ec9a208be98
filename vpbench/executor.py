"""Where trainings run: here, one after another (``inline``), or as jobs through submitit
(``local``: real subprocesses on this machine; ``slurm``: a SLURM cluster).

``compare``, ``ablate`` and budget ladders plan every run first (configs resolved under the
comparison's protocol); with a job executor each planned run becomes one job that trains it
(resuming a checkpoint it finds) and scores it under the same protocol into its run directory,
and the command gathers the result sets with the same table code as inline. Jobs run the
planned configs, never a re-derived ``vpbench run MODEL`` (whose data settings could differ).

- **Settings**: ``--executor`` and its options, over an ``[executor]`` table in ``./vpbench.toml``
  (the project), over one in ``$XDG_CONFIG_HOME/vpbench/vpbench.toml`` (the user), over the
  defaults of :class:`ExecutorConfig`.
- **Records**: ``<out>/jobs.json`` lists every job submitted for the command (label, run
  directory, job id, log); a rerun of the command, or ``vpbench gather OUT``, reads it, gathers
  what is done, waits for what still runs and resubmits only what is missing or failed.
- **Preemption**: SLURM's USR2 (``signal_delay`` seconds before the time limit, or before a
  preemption) makes the training write a checkpoint at the end of its step; the job then
  requeues itself through submitit and resumes bit-exactly. SIGTERM (``scancel``) checkpoints
  and fails the job; a rerun resumes it.
- **Hard kills** (SIGKILL, a lost node) are seen through SLURM's accounting (``sacct``): the job
  is reported failed with its log, never waited on forever.
- **Shared file systems**: run directories, their locks and result sets live on the file system
  that the submitting machine and the nodes share (paths are absolute in the jobs). The run
  lock is ``flock`` plus the holder's host in the lock file: a lock held on another host is
  refused by name. Where ``flock`` does not reach across hosts (some NFS set-ups), two hosts
  could both take a run; vpbench never submits two jobs for one run, so that happens only when
  two commands on different hosts train the same run at once. Do not.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from vpbench import io
from vpbench.errors import ConfigError, RunError, TrainingStopped, one_line
from vpbench.events import Events

KINDS = ("inline", "local", "slurm")
JOBS_FILE = "jobs.json"
USER_FILE = "vpbench/vpbench.toml"  # under $XDG_CONFIG_HOME (default ~/.config)
PROJECT_FILE = "vpbench.toml"


@dataclass(frozen=True)
class ExecutorConfig:
    """How jobs are submitted (``--executor`` and its options, or an ``[executor]`` table)."""

    kind: Literal["inline", "local", "slurm"] = "inline"
    partition: str = ""  # SLURM partition; "" = the cluster's default
    time: str = "4h"  # time limit of one job: minutes (90), 90m, 4h, 1d or [D-]HH:MM[:SS]
    gpus_per_task: int = 0
    cpus_per_task: int = 0  # CPUs per task, and the job's torch threads; 0 = the scheduler's default
    mem: str = ""  # memory per node, e.g. 32G or 500M; "" = the partition's default
    array_parallelism: int = 0  # at most this many jobs of one array at once; 0 = no cap
    nodes: int = 1  # nodes per training (torchrun-style DDP across them)
    tasks_per_node: int = 1  # processes per node (one per GPU for DDP)
    sbatch: tuple[str, ...] = ()  # extra sbatch parameters, key=value (account=abc, qos=high, constraint=a100)
    folder: str = ""  # job scripts, pickles and logs; "" = <out>/jobs
    poll: float = 5.0  # seconds between state checks while waiting
    signal_delay: int = 90  # seconds before the time limit that USR2 asks the training to checkpoint
    max_requeues: int = 3  # requeues after a time limit or preemption before a job counts as failed

    def __post_init__(self) -> None:
        from vpbench.validate import non_negative, positive

        positive(self, "nodes", "tasks_per_node", "poll", "max_requeues")
        non_negative(self, "gpus_per_task", "cpus_per_task", "array_parallelism", "signal_delay")
        minutes(self.time)
        mem_gb(self.mem)
        sbatch_parameters(self.sbatch)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node

    def describe(self) -> str:
        """One line for reports: where the trainings ran."""
        if self.kind == "inline":
            return "inline (one process, one training after another)"
        parts = [self.kind] + [f"{k} {v}" for k, v in (("partition", self.partition), ("time", self.time),
                                                        ("mem", self.mem)) if v]
        parts += [f"{k} {v}" for k, v in (("gpus/task", self.gpus_per_task), ("cpus/task", self.cpus_per_task)) if v]
        if self.world_size > 1:
            parts.append(f"{self.nodes} node(s) x {self.tasks_per_node} task(s) per training (DDP)")
        return ", ".join(parts)


def minutes(text: str) -> float:
    """A time limit in minutes: ``90``, ``90m``, ``1.5h``, ``2d``, ``30s`` or SLURM's ``[D-]HH:MM[:SS]``."""
    text = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text)
    if m:
        value = float(m.group(1)) * {"s": 1 / 60, "m": 1, "": 1, "h": 60, "d": 1440}[m.group(2)]
    else:
        m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?", text)
        if not m:
            raise ConfigError(f"executor.time: expected minutes (90), 90m, 4h, 1d or [D-]HH:MM[:SS], got {text!r}")
        d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        value = d * 1440 + h * 60 + mi + s / 60
    if value <= 0:
        raise ConfigError(f"executor.time must be positive, got {text!r}")
    return value


def mem_gb(text: str) -> float | None:
    """``32G`` / ``500M`` / ``1T`` (or a bare number of GB) in GB; ``""``: None."""
    if not str(text).strip():
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([MGT]?)B?", str(text).strip(), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"executor.mem: expected e.g. 32G or 500M, got {text!r}")
    return float(m.group(1)) * {"M": 1 / 1024, "G": 1, "": 1, "T": 1024}[m.group(2).upper()]


def sbatch_parameters(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip().lstrip("-")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_-]*", key):
            raise ConfigError(f"executor.sbatch: expected key=value (e.g. account=abc, qos=high), got {item!r}")
        out[key.replace("-", "_")] = value.strip()
    return out


def settings_files(cwd: Path | None = None) -> list[Path]:
    """The files whose ``[executor]`` tables apply, lowest priority first."""
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [home / USER_FILE, (cwd or Path.cwd()) / PROJECT_FILE]


def load_config(options: dict[str, Any] | None = None, cwd: Path | None = None) -> ExecutorConfig:
    """The executor settings: ``options`` (the command line; None values unset) over the project
    file over the user file over the defaults."""
    from vpbench.config import build, load_file

    merged: dict[str, Any] = {}
    for path in settings_files(cwd):
        if not path.is_file():
            continue
        table = load_file(path).get("executor", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [executor] must be a table of keys")
        try:
            build(ExecutorConfig, table, prefix="executor.")  # checked where it is written
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        merged.update(table)
    merged.update({k: v for k, v in (options or {}).items() if v is not None and v != ()})
    if "sbatch" in merged and isinstance(merged["sbatch"], str):
        merged["sbatch"] = [merged["sbatch"]]
    return build(ExecutorConfig, merged, prefix="executor.")


# -- one job --------------------------------------------------------------------------------

def _checkpointable() -> type:
    try:
        from submitit.helpers import Checkpointable
    except ImportError:  # a job executor is asked for; submitit is a dependency, so this is a broken install
        return object
    return Checkpointable


@dataclass
class Task(_checkpointable()):  # type: ignore[misc]
    """One planned unit of work: ``fn`` (``module:function``) called with ``payload`` in the job.

    Picklable (submitit sends it to the job). Its ``checkpoint`` (submitit's preemption hook)
    resubmits the same task, which resumes the checkpoint the training wrote."""

    label: str
    run_dir: str
    fn: str
    payload: dict[str, Any] = field(default_factory=dict)
    wave: int = 0  # tasks of wave k start after every task of wave k-1 succeeded (an ablation's bases first)
    threads: int = 0  # torch threads in the job (--cpus); 0: torch's default (every core it sees)

    def __call__(self) -> dict[str, Any]:
        if self.threads:
            import torch

            os.environ["OMP_NUM_THREADS"] = str(self.threads)
            torch.set_num_threads(self.threads)
        module, _, name = self.fn.partition(":")
        body: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), name)
        _export_distributed_env()
        try:
            return body(**self.payload)
        except TrainingStopped as exc:
            if exc.signum == signal.SIGUSR2 and _in_submitit_job():
                # the checkpoint is written: now submitit's own USR2 handler (restored when the
                # trainer stopped) calls checkpoint() below and requeues this job
                signal.raise_signal(signal.SIGUSR2)
            raise

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _in_submitit_job() -> bool:
    return bool(os.environ.get("SUBMITIT_EXECUTOR")) or bool(os.environ.get("SUBMITIT_LOCAL_JOB_ID"))


def _export_distributed_env() -> None:
    """Inside a job of several tasks: SLURM's (or submitit local's) variables as torchrun's
    ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` ..., which :mod:`vpbench.distributed` reads."""
    if not _in_submitit_job() or "WORLD_SIZE" in os.environ:
        return
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


class JobEvents(Events):
    """What a job reports goes to its log (stdout), one timestamped line each."""

    def message(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def task_start(self, key: str, description: str, total: int, completed: int = 0) -> None:
        self.message(f"start: {description} ({completed} of {total})")

    def task_end(self, key: str) -> None:
        self.message(f"done: {key}")


# -- submitting and waiting -----------------------------------------------------------------

@dataclass
class JobRecord:
    label: str
    run_dir: str
    job_id: str
    log: str
    wave: int = 0
    state: str = "PENDING"
    reason: str = ""
    submitted: float = 0.0  # time.time() at submission
    seen: float = 0.0  # time.time() when this command saw it done or failed


def _executor(cfg: ExecutorConfig, folder: Path):
    import submitit

    if cfg.kind == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=cfg.max_requeues)
        ex.update_parameters(timeout_min=minutes(cfg.time), tasks_per_node=cfg.tasks_per_node,
                             gpus_per_node=cfg.gpus_per_task * cfg.tasks_per_node, signal_delay_s=cfg.signal_delay)
        return ex
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=cfg.max_requeues)
    params: dict[str, Any] = dict(time=max(1, int(round(minutes(cfg.time)))), nodes=cfg.nodes,
                                  ntasks_per_node=cfg.tasks_per_node, signal_delay_s=cfg.signal_delay,
                                  job_name="vpbench")
    if cfg.partition:
        params["partition"] = cfg.partition
    if cfg.gpus_per_task:
        params["gpus_per_node"] = cfg.gpus_per_task * cfg.tasks_per_node
    if cfg.cpus_per_task:
        params["cpus_per_task"] = cfg.cpus_per_task
    if mem_gb(cfg.mem) is not None:
        params["mem"] = f"{max(1, int(mem_gb(cfg.mem) * 1024))}M"
    if cfg.array_parallelism:
        params["array_parallelism"] = cfg.array_parallelism
    extra = sbatch_parameters(cfg.sbatch)
    if extra:
        params["additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


def submit(tasks: list[Task], cfg: ExecutorConfig, folder: Path) -> list[tuple[JobRecord, Any]]:
    """Submit ``tasks`` (one wave) as one job array; their records and submitit's job handles."""
    if not tasks:
        return []
    check_submitit()
    folder.mkdir(parents=True, exist_ok=True)
    ex = _executor(cfg, folder)
    try:
        jobs = ex.submit_array(tasks)
    except Exception as exc:  # sbatch refused (bad partition, account, ...): its own words
        raise RunError(f"the {cfg.kind} executor could not submit {len(tasks)} job(s): {one_line(exc)}") from None
    now = time.time()
    return [(JobRecord(t.label, t.run_dir, str(j.job_id), str(j.paths.stdout), t.wave, submitted=now), j)
            for t, j in zip(tasks, jobs)]


class Jobs:
    """The jobs of one command (``<out>/jobs.json``) and their live states."""

    def __init__(self, out: Path, cfg: ExecutorConfig) -> None:
        self.out, self.cfg = out, cfg
        self.folder = Path(cfg.folder).resolve() if cfg.folder else (out / "jobs").resolve()
        self.records: list[JobRecord] = []
        self.handles: dict[str, Any] = {}
        path = out / JOBS_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                self.records = [JobRecord(**r) for r in data.get("jobs", [])]
                self.folder = Path(data.get("folder") or self.folder)
            except (ValueError, TypeError) as exc:
                raise RunError(f"{path} is not a vpbench jobs file ({one_line(exc)}); move it away and rerun") from None

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        io.write_json(self.out / JOBS_FILE, {"executor": self.cfg.kind, "folder": str(self.folder),
                                            "settings": dataclasses.asdict(self.cfg),
                                            "jobs": [dataclasses.asdict(r) for r in self.records]})

    def latest(self, run_dir: str) -> JobRecord | None:
        found = [r for r in self.records if r.run_dir == run_dir]
        return found[-1] if found else None

    def _job(self, record: JobRecord):
        if record.job_id in self.handles:
            return self.handles[record.job_id]
        if self.cfg.kind == "slurm":  # a job of an earlier command: the scheduler still knows it
            import submitit

            self.handles[record.job_id] = submitit.SlurmJob(folder=self.folder, job_id=record.job_id)
            return self.handles[record.job_id]
        return None

    def add(self, submitted: list[tuple[JobRecord, Any]]) -> list[JobRecord]:
        for record, handle in submitted:
            self.records.append(record)
            self.handles[record.job_id] = handle
        return [record for record, _ in submitted]

    def refresh(self, records: list[JobRecord]) -> None:
        """Update the states of ``records``: from each job's result file when it wrote one (at
        once), else from the scheduler (one forced ``sacct`` per refresh: submitit's own cache
        would answer up to minutes late)."""
        open_ = [r for r in records if r.state not in ("DONE", "FAILED")]
        handles = {r.job_id: self._job(r) for r in open_}
        live = [h for h in handles.values() if h is not None and hasattr(h, "watcher")]
        if live:
            for handle in live:
                handle.watcher.register_job(handle.job_id)
            try:
                live[0].watcher.update_if_long_enough(mode="force")
            except Exception:  # sacct briefly unavailable: ask again next time
                pass
        for record in open_:
            job = handles[record.job_id]
            if job is None:  # a local job of an earlier command: its process ended with that command
                record.state, record.reason = "FAILED", "its local executor ended with the command that started it"
                continue
            outcome = _outcome(job)
            if outcome is not None:
                record.state = "DONE" if outcome == "success" else "FAILED"
                if record.state == "FAILED" and not record.reason:
                    record.reason = _failure(job, "FAILED")
                self._seen([record])
                continue
            try:
                state = str(job.watcher.get_state(job.job_id, mode="cache") if hasattr(job, "watcher")
                            else job.state).split()[0].upper()
            except Exception:
                state = "UNKNOWN"
            record.state = _state(state, job)
            if record.state == "FAILED" and not record.reason:
                record.reason = _failure(job, state)
            unseen = state == "UNKNOWN" and record.submitted and \
                time.time() - record.submitted > 60 * minutes(self.cfg.time) + 600
            if unseen:  # never seen by the scheduler's accounting, and past its time limit: not waited on forever
                record.state = "FAILED"
                record.reason = ("the scheduler never reported it (no SLURM accounting? `sacct` must work) and its time "
                                 "limit has passed")
            self._seen([record])

    def _seen(self, records: list[JobRecord]) -> None:
        for record in records:
            if record.state in ("DONE", "FAILED") and not record.seen:
                record.seen = time.time()

    def wait(self, records: list[JobRecord], events: Events, show: Callable[[list[JobRecord]], None]) -> None:
        """Poll until every record is done or failed, showing the table when a state changes."""
        last = None
        while True:
            self.refresh(records)
            now = [(r.job_id, r.state) for r in records]
            if now != last:
                show(self.records)
                self.save()
                last = now
            if all(r.state in ("DONE", "FAILED") for r in records):
                return
            time.sleep(self.cfg.poll)


_ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD",
           "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED")


def _state(state: str, job: Any) -> str:
    """A scheduler state in vpbench's words: PENDING, RUNNING, REQUEUED, DONE or FAILED."""
    if state in ("COMPLETED", "FINISHED"):
        return "DONE" if _result_ok(job) else "FAILED"
    if state == "RUNNING" and _restarts(job):
        return "REQUEUED"
    if state in ("REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
        return "REQUEUED"
    if state in _ACTIVE:
        return "PENDING" if state in ("PENDING", "CONFIGURING") else "RUNNING"
    if state == "UNKNOWN":
        return "PENDING"  # just submitted: not in the accounting yet
    if state == "INTERRUPTED":  # a local job that asked to be requeued
        return "REQUEUED"
    return "FAILED"  # FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL, DEADLINE


def _outcome(job: Any) -> str | None:
    """``success`` or ``error`` from the job's result file, None while it has written none."""
    try:
        path = job.paths.result_pickle
        if not path.exists():
            return None
        import pickle

        return str(pickle.loads(path.read_bytes())[0])
    except Exception:  # being written, or unreadable: the scheduler decides
        return None


def _result_ok(job: Any) -> bool:
    return _outcome(job) == "success"


def _restarts(job: Any) -> int:
    try:
        return job.paths.stdout.read_text(errors="replace").count("Starting with JobEnvironment") - 1
    except OSError:
        return 0


def _failure(job: Any, state: str) -> str:
    """Why a job failed, in one line: the exception it raised, or the scheduler's state."""
    try:
        path = job.paths.result_pickle
        if path.exists():
            import pickle

            outcome, value = pickle.loads(path.read_bytes())
            if outcome == "error":
                lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
                return one_line(lines[-1] if lines else value)
    except Exception:
        pass
    if state in ("COMPLETED", "FINISHED"):
        return "it ended without writing its result (killed?)"
    return {"CANCELLED": "cancelled (scancel, or killed)", "NODE_FAIL": "its node failed",
            "OUT_OF_MEMORY": "out of memory", "TIMEOUT": "time limit reached too often (raise --time)",
            "PREEMPTED": "preempted"}.get(state, f"scheduler state {state}")


def execute(tasks: list[Task], cfg: ExecutorConfig, out: Path, events: Events, *, detach: bool = False,
            gather_only: bool = False, command: list[str] | None = None) -> Jobs:
    """Run ``tasks`` as jobs, wave after wave, skipping those whose job is done or still
    running (from ``<out>/jobs.json``); with ``detach`` submit the first pending wave and return;
    with ``gather_only`` submit nothing, only update the recorded jobs' states. ``command`` (the
    command line) is saved in ``out`` for ``vpbench gather``."""
    preflight(cfg, detach)
    jobs = Jobs(out, cfg)
    if not gather_only:
        out.mkdir(parents=True, exist_ok=True)
        save_command(out, command)
    show = events.jobs
    if gather_only:
        latest = [r for r in (jobs.latest(t.run_dir) for t in tasks) if r is not None]
        jobs.refresh(latest)
        jobs.save()
        show(jobs.records)
        return jobs
    for wave in sorted({t.wave for t in tasks}):
        todo, waiting = [], []
        for task in (t for t in tasks if t.wave == wave):  # every task here still lacks its result
            record = jobs.latest(task.run_dir)
            if record is not None and record.state not in ("DONE", "FAILED"):
                jobs.refresh([record])
            if record is not None and record.state in ("PENDING", "RUNNING", "REQUEUED"):
                waiting.append(record)  # submitted by an earlier command and still on its way
            else:
                todo.append(task)  # never submitted, failed, or done without its result (deleted since)
        for task in todo:
            task.threads = cfg.cpus_per_task
        cap = cfg.array_parallelism if cfg.kind == "local" and not detach else 0  # SLURM caps arrays itself
        fresh = _submit_and_say(jobs, todo[:cap] if cap else todo, cfg, events)
        if detach:
            show(jobs.records)
            return jobs
        current = waiting + fresh
        if cap:  # the local executor has no array cap of its own: the rest start as running ones end
            queue = todo[cap:]
            while queue:
                jobs.refresh(current)
                free = cap - sum(r.state not in ("DONE", "FAILED") for r in current)
                if free > 0:
                    current += _submit_and_say(jobs, queue[:free], cfg, events)
                    queue = queue[free:]
                    show(jobs.records)
                else:
                    time.sleep(cfg.poll)
        jobs.wait(current, events, show)
        failed = [r for r in current if r.state == "FAILED"]
        if failed and wave != max(t.wave for t in tasks):
            names = ", ".join(r.label for r in failed)
            raise RunError(f"{names} failed, and later jobs need them: see {failed[0].log}; rerun the command to "
                           "resubmit what failed")
    return jobs


def _submit_and_say(jobs: Jobs, tasks: list[Task], cfg: ExecutorConfig, events: Events) -> list[JobRecord]:
    fresh = jobs.add(submit(tasks, cfg, jobs.folder))
    for record in fresh:
        events.message(f"{record.label}: submitted as {cfg.kind} job {record.job_id} (log {record.log})")
    jobs.save()
    return fresh


def jobs_home(run: Any) -> Path:
    """Where ``vpbench run --executor ...`` keeps its job records: beside the run directory."""
    return run.run_dir.parent / f"{run.run_dir.name}.jobs"


def run_as_job(run: Any, cfg: ExecutorConfig, events: Events, *, track: Any = None, fresh: bool = False,
               detach: bool = False, gather_only: bool = False, command: list[str] | None = None) -> Any:
    """``vpbench run`` as one job (several tasks: one DDP training): submit it unless the run is
    scored already, wait, and return its table (None with ``detach``)."""
    from vpbench import results, runs
    preflight(cfg, detach)
    if fresh:
        runs.prepare_run_dir(run, fresh=True, events=events)
    data = runs.build_dataset(run, events)
    home = jobs_home(run)
    tasks = [] if runs.scored(run, data) is not None else [
        Task(run.config.model_name, str(run.run_dir.resolve()), "vpbench.compare:train_and_score",
             {"config": run.config.to_dict(), "run_dir": str(run.run_dir.resolve()),
              "data_dir": str(Path(run.data_dir).resolve()) if run.data_dir else None, "track": track})]
    jobs = execute(tasks, cfg, home, events, detach=detach, gather_only=gather_only, command=command)
    if detach:
        return None
    where = runs.scored(run, data)
    if where is None:
        why = failed_lines(jobs).get(str(run.run_dir.resolve()), "not trained and scored yet")
        raise RunError(f"{run.config.model_name}: {why}; rerun the command to resubmit it")
    run.eval_dir = where
    return results.read_results(where)[0]


def save_command(out: Path, argv: list[str] | None) -> None:
    """The command line that made ``out`` (``command.json``): ``vpbench gather OUT`` runs it again."""
    if argv:
        io.write_json(out / "command.json", {"argv": [a for a in argv if a != "--detach"], "cwd": str(Path.cwd())})


def preflight(cfg: ExecutorConfig, detach: bool = False) -> None:
    """Refuse, before anything is written or submitted, what this executor cannot do."""
    if cfg.kind == "inline":
        raise ConfigError("the inline executor runs no jobs")
    if detach and cfg.kind == "local":
        raise ConfigError("--detach needs a scheduler that outlives this command: use --executor slurm "
                          "(the local executor's jobs are children of this command)")
    check_submitit()


def check_submitit() -> None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError("the local and slurm executors need submitit: pip install submitit") from None


def not_done(missing: list[str], total: int, what: str, also: str = "") -> RunError:
    """The one line for jobs that are not done: each missing run with its job's state or failure."""
    return RunError(f"{len(missing)} of {total} {what}{'s' if total != 1 else ''} not done ({'; '.join(missing)}); "
                    f"the others' results are kept: rerun the command to resubmit what failed{also}")


def failed_lines(jobs: Jobs) -> dict[str, str]:
    """run directory -> one line for every run whose newest job is not done: why it failed (with
    its log), or its state (pending, running, requeued)."""
    latest = {r.run_dir: r for r in jobs.records}
    return {r.run_dir: (f"{r.reason or 'failed'} (job {r.job_id}, log {r.log})" if r.state == "FAILED"
                        else f"job {r.job_id} is {r.state.lower()} (log {r.log})")
            for r in latest.values() if r.state != "DONE"}

