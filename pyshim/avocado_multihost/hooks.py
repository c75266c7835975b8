"""Job hooks: bring the cluster up before multihost tests, clean up after."""

import subprocess

from avocado.core.exceptions import JobError
from avocado.core.output import LOG_JOB, LOG_UI
from avocado.core.plugin_interfaces import JobPostTests, JobPreTests

from avocado_multihost import KIND, binary

#: Ceiling for one hook; vtcluster bounds each SSH and RPC call itself, so
#: this only catches a hung binary.
HOOK_TIMEOUT_SECONDS = 900


def _has_multihost_tests(job):
    for suite in getattr(job, "test_suites", None) or []:
        for runnable in getattr(suite, "tests", None) or []:
            if getattr(runnable, "kind", None) == KIND:
                return True
    return False


def _log_output(stdout, stderr):
    """Log vtcluster's output lines in job.log, each saying it is
    vtcluster's once (its own messages already start so)."""
    for line in (stdout + stderr).splitlines():
        if line.strip():
            LOG_JOB.info("%s", line if line.startswith("vtcluster: ") else f"vtcluster: {line}")


def _show_holds_and_timelines(stdout):
    """Shows, in the job's output, the partitions held for debugging (how
    to reach their nodes) and the page linking the tests' timelines."""
    for line in stdout.splitlines():
        if line.startswith("HOLD: "):
            LOG_UI.warning("%s", line[len("HOLD: "):])
        elif line.startswith("TIMELINES: "):
            LOG_UI.info("MULTIHOST TIMELINES: %s", line[len("TIMELINES: "):])


class MultihostJobHooks(JobPreTests, JobPostTests):
    """Runs ``vtcluster hooks pre-tests``/``post-tests`` around a job.

    Only jobs with ``multihost`` tests touch the cluster, so ``avocado run
    /bin/true`` starts no process here. For the others:

    * before the tests, ``vtcluster [--state-dir D] --cluster C hooks
      pre-tests --job-id ID --job-logdir DIR`` starts the agents and collects
      node properties (or exits 0 when no cluster is configured). A non-zero
      exit aborts the job with JobError (exit code 2); vtcluster itself
      stops the agents it had started;
    * after the tests (also after a failed pre-tests), ``... hooks
      post-tests --job-id ID --job-logdir DIR`` fetches agent logs into
      ``DIR/cluster/<node>/``, stops the agents and reclaims the job's node
      reservations. Its failures are warnings.

    Registered under ``avocado.plugins.result_events``, because Avocado
    calls pre_tests/post_tests only on that group's plugins.
    """

    name = "multihost"
    description = (
        "Starts vtcluster agents for jobs with multihost tests, collects logs after"
    )

    def __init__(self, config=None):
        self.config = config
        # Jobs whose pre_tests reached vtcluster; only those get post_tests.
        self._engaged = set()

    @staticmethod
    def _argv(hook, job):
        return binary.command(
            "hooks",
            hook,
            "--job-id",
            job.unique_id,
            "--job-logdir",
            job.logdir,
            config=job.config,
        )

    def pre_tests(self, job):
        if not _has_multihost_tests(job):
            return
        try:
            argv = self._argv("pre-tests", job)
            # Agents that will not start count towards quarantine, at the
            # job's multihost.quarantine_after (0: vtcluster's default).
            after = int(job.config.get("multihost.quarantine_after") or 0)
            if after:
                argv += ["--quarantine-after", str(after)]
        except binary.BinaryNotFound as details:
            raise JobError(
                f"multihost: the job has multihost tests but {details}"
            ) from None
        self._engaged.add(job.unique_id)
        try:
            returncode, stdout, stderr = binary.run_captured(argv, HOOK_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise JobError(
                f"multihost: vtcluster hooks pre-tests did not finish in "
                f"{HOOK_TIMEOUT_SECONDS}s and was stopped"
            ) from None
        except OSError as details:
            raise JobError(f"multihost: running {argv[0]}: {details}") from None
        _log_output(stdout, stderr)
        if returncode != 0:
            reason = binary.last_lines(stderr) or binary.last_lines(stdout)
            raise JobError(
                f"multihost: preparing the cluster failed (vtcluster hooks "
                f"pre-tests exit status {returncode}): {reason or 'no output'}"
            )

    def post_tests(self, job):
        if job.unique_id not in self._engaged:
            return
        self._engaged.discard(job.unique_id)
        try:
            argv = self._argv("post-tests", job)
            returncode, stdout, stderr = binary.run_captured(argv, HOOK_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._warn(
                f"vtcluster hooks post-tests did not finish in {HOOK_TIMEOUT_SECONDS}s"
            )
            return
        except (binary.BinaryNotFound, OSError) as details:
            self._warn(str(details))
            return
        _log_output(stdout, stderr)
        _show_holds_and_timelines(stdout)
        if returncode != 0:
            reason = binary.last_lines(stderr) or "no output"
            self._warn(f"vtcluster hooks post-tests exit status {returncode}: {reason}")

    @staticmethod
    def _warn(message):
        LOG_UI.warning("multihost: cluster cleanup after the job: %s", message)
        LOG_JOB.warning("multihost: cluster cleanup after the job: %s", message)
