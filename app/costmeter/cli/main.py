"""The ``costmeter`` command: argument parsing and dispatch.

This module imports only the standard library so that ``costmeter --version`` and ``--help`` answer
at once; each subcommand's module (and with it psutil, sqlite-utils, pynvml) is imported on use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from costmeter import __version__
from costmeter.cli import arg_types as t
from costmeter.core import bounds as b

SIM_HELP = (
    "use simulated GPUs instead of the NVIDIA driver: a count (4) or a comma list of "
    "MODEL:PROFILE (a100:idle,h100:train); see `costmeter simulate --help` for models and profiles"
)


INTERVAL = t.number(b.INTERVAL_S)
INTERVAL_HELP = "seconds between samples (0.05 to 3600)"
SINCE = t.duration_text(b.WINDOW_S)
SINCE_HELP = "e.g. 1h, 24h, 7d"
RUNS = t.whole(b.PARALLEL_RUNS)


def _common(p: argparse.ArgumentParser, *, simulate: bool = True) -> None:
    p.add_argument("--db", metavar="PATH", help="database file (default: the user data dir)")
    p.add_argument("--config", metavar="PATH", help="config file (default: the user config dir)")
    if simulate:
        p.add_argument("--simulate", metavar="SPEC", help=SIM_HELP)
        p.add_argument(
            "--seed", type=t.whole(b.SEED), default=0, help="seed for simulated GPUs (default 0)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="costmeter",
        description="What your GPUs and CPUs are doing, what it costs, and what to change.",
    )
    parser.add_argument("--version", action="version", version=f"costmeter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    rec = sub.add_parser("record", help="sample GPUs and the host into the database (headless)")
    rec.add_argument("--interval", type=INTERVAL, metavar="S", help=INTERVAL_HELP)
    rec.add_argument(
        "--duration",
        type=t.duration_text(b.DURATION_S),
        metavar="S",
        help="stop after this long (90, 15m, 2h)",
    )
    rec.add_argument(
        "--remote",
        action="append",
        default=[],
        metavar="URL",
        help="also pull samples from a Costmeter agent at URL (repeatable); it backfills what "
        "it missed while the agent was unreachable",
    )
    rec.add_argument(
        "--token-file",
        action="append",
        default=[],
        metavar="F",
        help="the token for the --remote URL given just before it (or for every --remote when "
        "given once); the file must not be readable by others",
    )
    rec.add_argument(
        "--scrape",
        action="append",
        default=[],
        metavar="URL",
        help="also read a Prometheus exporter's /metrics (dcgm-exporter, node_exporter) at URL "
        "(repeatable)",
    )
    rec.add_argument(
        "--no-local",
        action="store_true",
        help="sample only the remote hosts, not this machine",
    )
    rec.add_argument(
        "--prometheus",
        action="append",
        default=[],
        metavar="URL",
        help="also read the dcgm-exporter and node_exporter history a Prometheus-compatible "
        "server holds (Prometheus, VictoriaMetrics, Thanos, Mimir) at URL, then follow it "
        "(repeatable); without --remote, --token-file is its bearer token",
    )
    rec.add_argument(
        "--match",
        metavar="SELECTOR",
        help='with --prometheus: a label selector added to every query, such as {cluster="a"}',
    )
    rec.add_argument(
        "--backfill",
        type=t.duration(b.BACKFILL_S),
        metavar="D",
        help="with --prometheus: how much history to read for a host not stored yet (7d, 12h; "
        "0 = follow only; default 7d); a host already stored resumes where it stops",
    )
    rec.add_argument(
        "--step",
        type=t.duration(b.QUERY_STEP_S),
        metavar="S",
        help="with --prometheus: the query step, 1 to 60 seconds (default 60)",
    )
    rec.add_argument(
        "--once",
        action="store_true",
        help="with --prometheus or [sources]: stop once every source has read up to now",
    )
    _common(rec)

    sim = sub.add_parser(
        "simulate",
        help="write H hours of simulated history that end now, in seconds",
        description="Write the H hours of history that end now, sampled from simulated GPUs "
        "on a simulated clock and written through the same store path as record. The GPUs' "
        "state is read directly, with the values the NVML sampler reads from the simulated "
        "driver (a test holds the two equal); --via-nvml-sampler goes through the sampler.",
    )
    sim.add_argument("--hours", type=t.number(b.HOURS), required=True, metavar="H")
    sim.add_argument("--interval", type=INTERVAL, metavar="S", help=INTERVAL_HELP)
    sim.add_argument(
        "--via-nvml-sampler",
        action="store_true",
        help="read the simulated GPUs call by call through the NVML sampler, as record --simulate "
        "does (about 3x slower; by default their state is read directly, with the same values)",
    )
    _common(sim)

    rep = sub.add_parser("report", help="energy, cost and idle cost per device and host")
    rep.add_argument("--since", default="24h", type=SINCE, metavar="DURATION", help=SINCE_HELP)
    rep.add_argument("--format", choices=("table", "json", "csv"), default="table")
    rep.add_argument(
        "--by",
        type=t.dimensions,
        metavar="DIM[,DIM2]",
        help="who pays: split the cost by user, job, account, container, pod, namespace, run, "
        "project, host, gpu-model or tag:KEY (one or two, e.g. project,user)",
    )
    rep.add_argument(
        "--share-idle",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --by: spread machine idle over the owners in proportion to their cost "
        "(OpenCost's shareIdle; default: [attribution] share_idle in the config)",
    )
    rep.add_argument(
        "--simulate",
        nargs="?",
        const="",
        metavar="SPEC",
        help="read the simulation database (the default for commands run with --simulate)",
    )
    _common(rep, simulate=False)

    adv = sub.add_parser(
        "advise",
        help="recommendations to pay less, with the evidence and the money each saves",
        description="Read the recorded samples and runs, and list what to change to pay less: "
        "idle or under-used GPUs, memory headroom or pressure, input-bound runs, power limits, "
        "packing sweeps, budgets. Each comes with its evidence and savings per month.",
    )
    adv.add_argument("--since", default="24h", type=SINCE, metavar="DURATION", help=SINCE_HELP)
    adv.add_argument("--format", choices=("table", "json"), default="table")
    adv.add_argument(
        "--all", action="store_true", help="include dismissed and snoozed recommendations"
    )
    adv.add_argument(
        "--simulate",
        nargs="?",
        const="",
        metavar="SPEC",
        help="read the simulation database (the default for commands run with --simulate)",
    )
    _common(adv, simulate=False)

    imp = sub.add_parser(
        "import",
        help="load a GPU log written elsewhere (nvidia-smi CSV, Costmeter export) into history",
        description="Load the CSV that `nvidia-smi --query-gpu=... --format=csv -l N` wrote "
        "(any columns that include timestamp and utilization.gpu, with or without units), or "
        "a series exported from Costmeter's History page, into the database, so report, "
        "history and advise cover machines where Costmeter never ran. Importing a file again "
        "adds nothing. Malformed lines are skipped and named. Exit status: 0 all imported, "
        "1 some lines skipped, 2 nothing imported.",
    )
    imp.add_argument("file", metavar="FILE", help="the log file")
    imp.add_argument(
        "--host", metavar="NAME", help="the machine the log came from (default: the file name)"
    )
    imp.add_argument(
        "--gpu-model",
        metavar="MODEL",
        help="the GPU model, for prices and energy estimates when the file has no name or "
        "power.draw column: a100, h100, rtx4090, t4, l4, a10g, p4 or a name as nvidia-smi "
        "prints it",
    )
    imp.add_argument(
        "--tz",
        metavar="ZONE",
        help="time zone of nvidia-smi's timestamps, which are the logging machine's local "
        "time: UTC, +02:00 or Europe/Berlin (default: this machine's zone)",
    )
    imp.add_argument(
        "--columns",
        metavar="A,B,C",
        help="column names for a file written with noheader (or with its own names), in "
        "order, as in --query-gpu: timestamp,index,utilization.gpu,power.draw",
    )
    imp.add_argument(
        "--metric",
        metavar="METRIC",
        help="for a Costmeter export whose file name does not say: gpu_util, power_w, ...",
    )
    _common(imp, simulate=False)

    cmp_ = sub.add_parser(
        "compress",
        help="compress a model and measure size, CPU latency and accuracy before and after",
        description="Apply a compression METHOD to MODEL and measure, with torch on this "
        "machine's CPU, its size, latency at batch 1 and at a larger batch, and (with --eval) "
        "its accuracy and agreement with the original. Exits with 1 when the compressed model "
        "is rejected. Needs torch (pip install 'costmeter[torch]').",
    )
    cmp_.add_argument(
        "model",
        metavar="MODEL",
        help="torch.save(model) file, TorchScript or torch.export (.pt2) file",
    )
    cmp_.add_argument(
        "--method",
        required=True,
        metavar="METHOD",
        help="int8-dynamic (torchao; int8-dynamic:torch.ao for torch's older quantizer), "
        "int8-weight, fp16, bf16, prune:AMOUNT (prune:0.5) or distill[:hidden=H,epochs=E,"
        "temperature=T,alpha=A,seed=S] (trains a smaller student; needs --train)",
    )
    cmp_.add_argument("--eval", metavar="DATA.npz", help="arrays x and y to measure accuracy on")
    cmp_.add_argument(
        "--train",
        metavar="DATA.npz",
        help="distill only: arrays x (and labels y) to train the student on",
    )
    cmp_.add_argument(
        "--goal",
        choices=("cost", "latency", "size"),
        default="cost",
        help="what the verdict asks of the compressed model: cost (default: cheaper to serve "
        "per inference at batch 1 or the larger batch, dearer at neither), latency (faster at "
        "batch 1) or size (smaller to store and hold in memory)",
    )
    cmp_.add_argument(
        "--out",
        metavar="PATH",
        help="save the compressed model unless rejected: a .pt2 name writes a torch.export "
        "program, another name torch.save(model); a TorchScript model stays TorchScript",
    )
    cmp_.add_argument("--format", choices=("table", "json"), default="table")
    cmp_.add_argument(
        "--max-drop",
        type=t.number(b.PERCENT_POINTS),
        default=1.0,
        metavar="POINTS",
        help="reject the compressed model when accuracy drops more than this many "
        "percentage points (default 1)",
    )
    cmp_.add_argument(
        "--trust",
        action="store_true",
        help="allow unpickling a torch.save(model) file: unpickling runs code from the file, "
        "so only pass this for files you made or trust",
    )
    cmp_.add_argument(
        "--batch", type=t.whole(b.BATCH), default=64, metavar="N", help="the larger batch"
    )
    cmp_.add_argument(
        "--repeat", type=t.whole(b.REPEATS), default=30, metavar="N", help="timed runs per figure"
    )

    exm = sub.add_parser(
        "example",
        help="train a bundled example model (needs torch)",
        description="Train a bundled example. digits: a small MLP on scikit-learn's digits, the "
        "same model the runs example trains; --out saves it for `costmeter compress`.",
    )
    exm.add_argument("name", choices=("digits",), help="the example")
    exm.add_argument(
        "--out", metavar="MODEL", help="save the trained model (weights only: no --trust needed)"
    )
    exm.add_argument("--eval-out", metavar="DATA.npz", help="save the held-out data (x, y)")
    exm.add_argument(
        "--train-out",
        metavar="DATA.npz",
        help="save the training data (x, y), e.g. for compress --method distill --train",
    )
    exm.add_argument("--epochs", type=t.whole(b.EPOCHS), default=20)
    exm.add_argument("--seed", type=t.whole(b.SEED), default=0)

    agt = sub.add_parser(
        "agent",
        help="serve this machine's samples to a remote Costmeter or Prometheus (headless)",
        description="Sample this machine with the same samplers as `record`, keep a local "
        "buffer so nothing is lost while no one is connected, and serve /metrics (Prometheus "
        "text format), /v1/info and /v1/samples. Listens on 127.0.0.1 unless told otherwise; "
        "any other address needs --token-file.",
    )
    agt.add_argument(
        "--listen",
        default="127.0.0.1:9464",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:9464; port 0 picks a free one)",
    )
    agt.add_argument("--token-file", metavar="F", help="file holding the bearer token")
    agt.add_argument("--tls-cert", metavar="F", help="certificate (PEM) to serve HTTPS")
    agt.add_argument("--tls-key", metavar="F", help="private key (PEM) of --tls-cert")
    agt.add_argument("--interval", type=INTERVAL, metavar="S", help=INTERVAL_HELP)
    agt.add_argument(
        "--buffer-hours",
        type=t.number(b.HOURS),
        default=24.0,
        metavar="H",
        help="how long the local buffer keeps samples for backfill (default 24)",
    )
    agt.add_argument("--name", metavar="NAME", help="the host name samples carry")
    agt.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="PID:GPU",
        help="with --simulate: show the running process PID on simulated GPU GPU (repeatable), "
        "so its owner is read from /proc as on a machine with GPUs (tests, demos)",
    )
    agt.add_argument(
        "--max-connections",
        type=t.whole(b.CONNECTIONS),
        metavar="N",
        help="connections open at once (default: [agent] max_connections, 512)",
    )
    agt.add_argument(
        "--max-per-client",
        type=t.whole(b.CONNECTIONS),
        metavar="N",
        help="connections open at once from one address (default: [agent] max_per_client, 32)",
    )
    agt.add_argument(
        "--request-timeout",
        type=t.number(b.REQUEST_TIMEOUT_S),
        metavar="S",
        help="seconds a client has to send its request (default: [agent] request_timeout_s, 5)",
    )
    _common(agt)

    gui = sub.add_parser("gui", help="open the desktop app (the default without a command)")
    gui.add_argument(
        "--screenshot",
        metavar="PATH",
        help="save a PNG of the window once it shows live data, then quit",
    )
    gui.add_argument(
        "--quit-after",
        type=t.number(b.SECONDS),
        metavar="S",
        help="close the window after S seconds",
    )
    gui.add_argument(
        "--page",
        choices=(
            "overview",
            "devices",
            "processes",
            "runs",
            "history",
            "who-pays",
            "advice",
            "hosts",
            "settings",
        ),
        help="the page to open on",
    )
    gui.add_argument("--interval", type=INTERVAL, metavar="S", help=INTERVAL_HELP)
    gui.add_argument("--theme", choices=("light", "dark"), help="override the saved theme")
    gui.add_argument(
        "--settings", metavar="PATH", help="window settings file (default: the platform's)"
    )
    _common(gui)

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", metavar="NAME", help="run backend (default: local)")
        p.add_argument(
            "--backend-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="an option of the backend, over its [backends.NAME] table in the config file "
            '(repeatable; VALUE is read as TOML when it can be: 2, true, "x")',
        )
        p.add_argument(
            "--gpus",
            type=t.gpus,
            metavar="N",
            help="GPUs to place each run on (CUDA_VISIBLE_DEVICES); without it a run is not "
            "placed and is charged for the GPUs its processes use",
        )
        p.add_argument("--name", metavar="NAME", help="the run's name (default: from the command)")
        p.add_argument(
            "--tag",
            type=t.tag,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a tag on each run, to report cost by (repeatable: --tag team=vision --tag "
            "owner=alice; `costmeter report --by tag:team`)",
        )
        p.add_argument(
            "--budget",
            type=t.money_text(b.BUDGET),
            metavar="MONEY",
            help="stop a run once it costs more (2.50)",
        )
        p.add_argument(
            "--time-limit",
            type=t.duration_text(b.DURATION_S),
            metavar="DURATION",
            help="stop a run after this (30m, 2h)",
        )
        p.add_argument(
            "--profile",
            metavar="PROFILE",
            help="simulated workload of a run's process on simulated GPUs (default: the GPU's "
            "profile in --simulate, else train)",
        )
        p.add_argument(
            "--nproc-per-node",
            type=t.number_or_placeholder(b.NPROC),
            metavar="N",
            help="start the command through PyTorch's launcher (torch.distributed.run) with N "
            "processes, one per GPU (gloo on CPU), as one run; in a sweep N may be a grid's "
            "{NAME}",
        )
        p.add_argument(
            "--output-dir",
            action="append",
            default=[],
            metavar="DIR",
            help="a folder the run writes checkpoints to: its size is measured while it runs "
            "and priced as storage (repeatable)",
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="launch nothing: print the predicted duration, cost and range from past runs",
        )
        p.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="with --dry-run: the predictions as text or JSON",
        )
        p.add_argument("--interval", type=INTERVAL, metavar="S", help=INTERVAL_HELP)
        _common(p)
        p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")

    run = sub.add_parser(
        "run",
        help="run a command, sample the machine meanwhile, and say what it cost",
        usage="costmeter run [options] -- CMD [ARGS...]",
        description="Run CMD (after --), sampling the machine while it runs. Prints the cost "
        "expected from past runs of the same command first, streams its output, then a summary "
        "with what it cost; exits with its exit code (130 after Ctrl-C, which cancels it).",
    )
    run_options(run)
    swp = sub.add_parser(
        "sweep",
        help="run a command over a grid of values, K at a time",
        usage="costmeter sweep --grid NAME=V1,V2 [--grid ...] [options] -- CMD {NAME} ...",
        description="One run per combination of the grids' values, {NAME} in CMD replaced by "
        "the value; up to --max-parallel at once, at most --per-gpu on one GPU. Output lines "
        "start with the run's name; a table of the runs closes it.",
    )
    swp.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...")
    swp.add_argument("--max-parallel", type=RUNS, default=1, metavar="K", help="runs at once")
    swp.add_argument("--per-gpu", type=RUNS, default=1, metavar="M", help="runs per GPU at once")
    swp.add_argument(
        "--stop-on-failure", action="store_true", help="start no more runs once one fails"
    )
    run_options(swp)
    rns = sub.add_parser("runs", help="the runs Costmeter launched, newest first")
    rns.add_argument("--format", choices=("table", "json"), default="table")
    rns.add_argument(
        "--calibration",
        action="store_true",
        help="instead of the runs: how their predictions fared (share of actual costs inside "
        "the predicted range, median error)",
    )
    rns.add_argument(
        "--limit", type=t.whole(b.LIST_LIMIT), default=50, metavar="N", help="at most N runs"
    )
    rns.add_argument(
        "--simulate",
        nargs="?",
        const="",
        metavar="SPEC",
        help="read the simulation database (where runs with --simulate went)",
    )
    _common(rns, simulate=False)

    wif = sub.add_parser(
        "whatif",
        help="what a finished run (or a GPU's recent work) would cost on each other GPU model",
        description="Estimate a finished run's duration and cost on every GPU model in the "
        "price table: its measured peak memory must fit (plus a margin), and its busy time "
        "scales by the models' published dense TFLOPS and memory bandwidth, weighted by how "
        "compute- or memory-bound it measured. An estimate, not a benchmark.",
    )
    wif_what = wif.add_mutually_exclusive_group(required=True)
    wif_what.add_argument("--run", type=t.whole(b.RUN_ID), metavar="ID", help="a finished run")
    wif_what.add_argument(
        "--device", metavar="HOST:INDEX", help="a GPU's work over --since instead of a run"
    )
    wif.add_argument("--since", default="24h", type=SINCE, metavar="DURATION", help=SINCE_HELP)
    wif.add_argument(
        "--precision",
        choices=("fp32", "tf32", "fp16", "bf16"),
        default="bf16",
        help="the TFLOPS column compute scales by (default bf16: mixed-precision training)",
    )
    wif.add_argument("--format", choices=("table", "json"), default="table")
    wif.add_argument(
        "--simulate",
        nargs="?",
        const="",
        metavar="SPEC",
        help="read the simulation database (where runs with --simulate went)",
    )
    _common(wif, simulate=False)

    ckp = sub.add_parser(
        "checkpoints",
        help="a run's checkpoint files: which later ones supersede, and deleting them",
        description="List the checkpoint files in a run's output folders (--output-dir), which "
        "to keep (the last K of each series and any named best) and which later ones "
        "supersede, with the GB and money per month deleting them saves. With --delete, the "
        "list is shown first and the files are deleted one by one after you confirm.",
    )
    ckp.add_argument("--run", type=t.whole(b.RUN_ID), required=True, metavar="ID")
    ckp.add_argument(
        "--keep",
        type=t.whole(b.CHECKPOINTS_KEPT),
        default=2,
        metavar="K",
        help="checkpoints of each series to keep, the newest (default 2)",
    )
    ckp.add_argument(
        "--delete", action="store_true", help="delete the superseded files (asks first)"
    )
    ckp.add_argument(
        "--yes", action="store_true", help="with --delete: do not ask (the list is still shown)"
    )
    ckp.add_argument("--format", choices=("table", "json"), default="table")
    _common(ckp, simulate=False)

    doc = sub.add_parser("doctor", help="check the NVIDIA driver, permissions and the database")
    _common(doc)

    plug = sub.add_parser(
        "plugins", help="list the run backends installed, whether each loads, what each can do"
    )
    plug.add_argument("--format", choices=("table", "json"), default="table")
    plug.add_argument(
        "--config", metavar="PATH", help="config file whose [backends.NAME] options are used"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `costmeter` alone opens the desktop app
        args = parser.parse_args(["gui"])
    module = importlib.import_module(f"costmeter.cli.{args.command}_cmd")
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: a sentence, not a traceback
        from costmeter.core import CostmeterError

        if isinstance(exc, CostmeterError):
            print(f"costmeter: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
