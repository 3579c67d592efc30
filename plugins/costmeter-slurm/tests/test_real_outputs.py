"""Parsers and the state mapping on Slurm output other people's clusters produced.

``tests/data/slurm/hb-jobinfo-*.txt``: sacct, squeue and scontrol dumps from the University of
Groningen's Hábrók cluster, kept as test data by rug-cit-hpc/hb-jobinfo (MIT); see
tests/data/slurm/PROVENANCE.md. ``slurm-22.05-*.txt``: this project's own captures from the
test cluster (slurm-wlm 22.05.8), for the commands and formats the backend itself runs.
"""

from __future__ import annotations

from collections import Counter

from conftest import DATA
from costmeter_slurm.backend import _ACCOUNTING_OFF
from costmeter_slurm.parse import (
    SACCT_FIELDS,
    JobInfo,
    first_record,
    gpu_indices,
    gpus_in_tres,
    parse_keyvalues,
    parse_listpids,
    parse_nodes,
    parse_sacct,
    parse_scontrol_job,
    parse_squeue,
    parse_time,
)
from costmeter_slurm.states import pending_words, run_state

from costmeter.plugin_api import RunState

#: The field list hb-jobinfo's generate_data.sh gave sacct (``--delimiter=☃``).
HB_FIELDS = [
    "JobID",
    "JobName",
    "User",
    "Partition",
    "NodeList",
    "NNodes",
    "NCPUs",
    "NTasks",
    "State",
    "Submit",
    "Start",
    "End",
    "Timelimit",
    "Elapsed",
    "TotalCPU",
    "CPUTime",
    "UserCPU",
    "SystemCPU",
    "ReqMem",
    "MaxRSS",
    "MaxVMSize",
    "ReqTRES",
    "AllocTRES",
    "TRESUsageInMax",
    "TRESUsageInTot",
    "TRESUsageOutTot",
    "MaxDiskRead",
    "MaxDiskWrite",
    "MaxRSSNode",
    "MaxRSSTask",
    "MaxVMSizeNode",
    "MaxVMSizeTask",
    "MaxDiskReadNode",
    "MaxDiskReadTask",
    "MaxDiskWriteNode",
    "MaxDiskWriteTask",
    "Comment",
]


def hb_jobs() -> dict[str, JobInfo]:
    text = (DATA / "hb-jobinfo-sacct.txt").read_text()
    return {job.job_id: job for job in parse_sacct(text, HB_FIELDS, "☃")}


def test_every_allocation_row_of_a_real_sacct_dump_is_read() -> None:
    text = (DATA / "hb-jobinfo-sacct.txt").read_text()
    allocations = [ln for ln in text.splitlines() if ln and "." not in ln.split("☃")[0]]
    jobs = parse_sacct(text, HB_FIELDS, "☃")
    assert len(jobs) == len(allocations) == 100
    assert Counter(job.state for job in jobs) == {
        "COMPLETED": 66,
        "CANCELLED": 8,
        "FAILED": 8,
        "TIMEOUT": 7,
        "PENDING": 7,
        "RUNNING": 3,
        "NODE_FAIL": 1,
    }
    # Every state of a real cluster maps to a run state; none is left unknown.
    mapped = Counter(run_state(job)[0] for job in jobs)
    assert mapped == {
        RunState.SUCCEEDED: 66,
        RunState.CANCELLED: 8,
        RunState.FAILED: 16,
        RunState.QUEUED: 7,
        RunState.RUNNING: 3,
    }


def test_real_rows_say_gpus_nodes_and_times() -> None:
    jobs = hb_jobs()
    failed = jobs["7939708"]  # AllocTRES billing=8,cpu=8,gres/gpu:a100=1,gres/gpu=1,...
    assert (failed.state, failed.gpus, failed.batch_host) == ("FAILED", 1, "a100gpu2")
    assert failed.started == parse_time("2024-04-03T20:32:21")
    assert failed.ended == parse_time("2024-04-03T20:32:25")
    multi = jobs["2296177"]  # omni[1,10-12], 4 nodes
    assert (multi.batch_host, multi.nodes, multi.node_count) == ("omni1", "omni[1,10-12]", 4)
    never_ran = jobs["4047445"]  # cancelled while pending: Start None, NodeList None assigned
    assert (never_ran.started, never_ran.batch_host) == (None, None)
    pending = jobs["8323312"]  # no AllocTRES yet: the GPUs come from ReqTRES
    assert (pending.state, pending.gpus) == ("PENDING", 1)


def test_real_end_states_in_words() -> None:
    jobs = hb_jobs()
    assert run_state(jobs["6708912"]) == (RunState.FAILED, "Hit its time limit (3 days).")
    assert run_state(jobs["8182578"]) == (RunState.FAILED, "Hit its time limit (8 h).")
    assert run_state(jobs["7216821_144"]) == (
        RunState.FAILED,
        "Hit its time limit (2 days 23 h 59 min).",
    )
    assert run_state(jobs["7336818"]) == (RunState.FAILED, "Its node failed.")
    state, words = run_state(jobs["4034541"])  # "CANCELLED by 10304007"
    assert state is RunState.CANCELLED and "10304007" in words
    assert run_state(jobs["7939708"]) == (RunState.FAILED, "Failed.")  # no ExitCode column


def test_real_pending_reasons_in_words() -> None:
    """squeue ``%R`` of real pending jobs (hb-jobinfo's squeue.txt: ``%i|%E;%R;%C``)."""
    reasons = {}
    for line in (DATA / "hb-jobinfo-squeue.txt").read_text().splitlines():
        job_id, rest = line.split("|", 1)
        reason = rest.split(";")[1]
        if reason.startswith("("):
            reasons[job_id] = reason.strip("()")
    assert pending_words(reasons["7219441"], None) == (
        "Dependency — it waits for the jobs it depends on"
    )
    assert pending_words(reasons["7859587"], None).startswith("Priority — jobs with a higher")
    assert pending_words(reasons["8326038"], 1).endswith(
        "the nodes it needs are down, drained or kept for higher-priority partitions"
    )
    assert pending_words("Resources", 2) == "Resources — the GPUs it asks for are all in use"


def test_real_node_tres_count_gpus() -> None:
    text = (DATA / "hb-jobinfo-scontrol.txt").read_text()
    nodes = {node.name: node for node in parse_nodes(text)}
    assert len(nodes) == 183
    assert nodes["a100gpu1"].gpus == 4
    assert sum(node.gpus for node in nodes.values()) == sum(
        gpus_in_tres(line.split("CfgTRES=")[1]) or 0 for line in text.splitlines()
    )
    assert gpus_in_tres("billing=64,cpu=64,gres/gpu:a100=4") == 4  # typed only: added up


def test_this_slurms_scontrol_sacct_and_listpids_output() -> None:
    """Captured from slurm-wlm 22.05.8 on the test cluster (see PROVENANCE.md)."""
    running = (DATA / "slurm-22.05-scontrol-job-detail.txt").read_text()
    job = parse_scontrol_job(first_record(running))
    assert job is not None
    assert (job.state, job.batch_host, job.gpus, job.exit_code) == ("RUNNING", "vm", 3, 0)
    assert gpu_indices(running) == (0, 1, 2)
    timeout = parse_scontrol_job((DATA / "slurm-22.05-scontrol-timeout.txt").read_text())
    assert timeout is not None and timeout.exit_code == -15
    assert run_state(timeout) == (RunState.FAILED, "Hit its time limit (1 min).")
    completion = (DATA / "slurm-22.05-sacct-completion.txt").read_text()
    (cancelled,) = parse_sacct(completion, SACCT_FIELDS)
    assert (cancelled.state, cancelled.batch_host) == ("CANCELLED", "vm")
    listed = parse_listpids((DATA / "slurm-22.05-listpids.txt").read_text())
    assert [pid for pid, _ in listed if pid > 0] == [pid for pid, _ in listed]
    nodes = parse_nodes((DATA / "slurm-22.05-scontrol-node.txt").read_text())
    assert [(n.name, n.gpus, n.gpus_used, n.usable) for n in nodes] == [("vm", 4, 3, True)]
    queue = parse_squeue((DATA / "slurm-22.05-squeue.txt").read_text())
    assert [(j.job_id, j.state, j.batch_host, j.gpus, j.time_limit) for j in queue.values()] == [
        ("1", "RUNNING", "vm", None, "1:00"),
        ("2", "RUNNING", "vm", 3, "UNLIMITED"),
    ]
    assert queue["1"].started == parse_time("2026-12-05T18:47:02") and queue["2"].ended is None
    # What plain sacct says without slurmdbd: the backend then asks scontrol and sacct -c.
    disabled = (DATA / "slurm-22.05-sacct-disabled.txt").read_text().lower()
    assert _ACCOUNTING_OFF in disabled
    ended = {
        record.split()[0]: parse_keyvalues(record)["JobState"]
        for record in (DATA / "slurm-22.05-jobcomp.txt").read_text().splitlines()
    }
    assert ended == {"JobId=2": "CANCELLED", "JobId=1": "TIMEOUT"}
