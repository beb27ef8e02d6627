"""The gateway's added latency and throughput, side by side with calling the stub directly and with
LiteLLM's proxy in front of the same stub, all in one run.

    python -m tests.benchmarks.proxy_overhead [--duration 10] [--concurrency 1 16 64] [--no-litellm]
        [--baseline REV [--baseline REV ...]] [--rounds N]

Needs ``wrk`` (Debian: ``apt-get install wrk``). LiteLLM is installed on first use into its own virtual
environment under ``.bench/`` (about 740 MB), so its pins never touch the gateway's.
The table goes to stdout and to ``tests/benchmarks/results/proxy_overhead.md``.

``--baseline REV`` also measures the gateway of an earlier commit, side by side with the current tree in
the same run: REV is checked out into a temporary detached git worktree (removed afterwards) and its
gateway started like the current one (same config, same Python environment, that tree's ``gateway``
package). The current gateway and each baseline are measured interleaved, ``--rounds`` times (default 2),
and the table shows each target's median over the rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from gateway.relay.embedded_llm import free_port
from tests.support.servers import stop, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "benchmarks" / "results" / "proxy_overhead.md"
LITELLM_VENV = ROOT / ".bench" / "litellm-venv"
LITELLM_KEY = "sk-bench-master-key"
BODY = '{"model":"stub-model","messages":[{"role":"user","content":"Say something short."}],"max_tokens":16}'


@dataclass
class Target:
    name: str
    url: str
    api_key: str | None = None


@dataclass
class Measurement:
    target: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Baseline:
    """An earlier commit to measure the current gateway against."""

    rev: str  # as given on the command line
    sha: str
    short: str
    subject: str


@contextmanager
def process(
    command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        stop(proc)


def start_stub(stack: ExitStack, logs: Path) -> Target:
    port = free_port()
    proc = stack.enter_context(
        process([sys.executable, "-m", "tests.benchmarks.fast_stub", "--port", str(port)], logs / "stub.log")
    )
    wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc)
    return Target("direct (stub)", f"http://127.0.0.1:{port}/v1/chat/completions")


def start_gateway(
    stack: ExitStack, logs: Path, stub_base: str, record: bool = False, baseline: Baseline | None = None
) -> Target:
    """The gateway with no guards; with ``record``, every completion also goes to (embedded) Redis.

    With ``baseline``, that commit's gateway instead, from a temporary worktree: same config (its own
    port and data dir), same interpreter and environment, but that tree's ``gateway`` package.
    """
    port = free_port()
    config = logs / f"gateway-{port}.yaml"
    config.write_text(
        f"data_dir: {logs / f'data-{port}'}\n"
        f"upstreams: [{{name: stub, url: '{stub_base}'}}]\n"
        "policies: {default: {}}\n"
        f"feedback: {{record: {'true' if record else 'false'}}}\n"
    )
    env = dict(os.environ)
    env.pop("HHH_UPSTREAM_URL", None)
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    command += ["--log-level", "warning"]
    if baseline is None:
        proc = stack.enter_context(process(command, logs / "gateway.log", env))
        wait_until_up(f"http://127.0.0.1:{port}/health", proc)
        name = "hhh-gateway + recording" if record else "hhh-gateway"
        return Target(name, f"http://127.0.0.1:{port}/v1/chat/completions")
    tree = stack.enter_context(worktree(baseline))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    expect_package_from(tree, env)
    name = f"hhh-gateway@{baseline.short}"
    log = logs / f"gateway@{baseline.short}.log"
    proc = stack.enter_context(process(command, log, env, cwd=tree))
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc)
    except RuntimeError as error:  # the log goes with the scratch directory: show its end now
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{name} did not start ({error}); the end of its log:\n{tail}") from error
    return Target(name, f"http://127.0.0.1:{port}/v1/chat/completions")


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(rev: str) -> Baseline:
    try:
        sha = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except RuntimeError:
        sys.exit(f"--baseline {rev}: not a commit in {ROOT}")
    return Baseline(rev, sha, git("rev-parse", "--short", sha), git("log", "-1", "--format=%s", sha))


def current_tree() -> str:
    """What "current" means in this run: the working tree, at HEAD, with or without local changes."""
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"the working tree at {head}" + (" with uncommitted changes" if dirty else "")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def worktree(baseline: Baseline) -> Iterator[Path]:
    """``baseline`` checked out in a temporary detached worktree, removed afterwards even on error."""
    parent = Path(tempfile.mkdtemp(prefix=f"hhh-bench-{baseline.short}-"))
    tree = parent / "tree"
    try:
        git("worktree", "add", "--detach", str(tree), baseline.sha)
        yield tree
    finally:
        try:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True
            )
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
        finally:
            shutil.rmtree(parent, ignore_errors=True)


def expect_package_from(tree: Path, env: dict[str, str]) -> None:
    """Fail now, not with a meaningless comparison, if ``gateway`` would not be imported from ``tree``."""
    probe = [sys.executable, "-c", "import gateway; print(gateway.__file__)"]
    done = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode != 0:
        raise RuntimeError(f"the baseline's gateway package does not import:\n{done.stderr}")
    found = done.stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the baseline would import gateway from {found}, not from {tree}")


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print("installing LiteLLM into .bench/litellm-venv (once; about 740 MB)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return binary


def start_litellm(stack: ExitStack, logs: Path, stub_base: str) -> Target:
    binary = ensure_litellm()
    port = free_port()
    config = logs / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: stub-model\n"
        f"    litellm_params: {{model: openai/stub-model, api_base: '{stub_base}', api_key: x}}\n"
        "general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n"
    )
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": LITELLM_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
    }
    env.pop("DATABASE_URL", None)
    command = [
        str(binary),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    proc = stack.enter_context(process(command, logs / "litellm.log", env))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # ready means a real completion goes through
        if proc.poll() is not None:
            raise RuntimeError(f"LiteLLM exited; see {logs / 'litellm.log'}")
        try:
            response = httpx.post(
                url, content=BODY, headers={"authorization": f"Bearer {LITELLM_KEY}"}, timeout=5
            )
            if response.status_code == 200:
                return Target("LiteLLM proxy", url, LITELLM_KEY)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("LiteLLM did not answer a completion in 120 s")


def wrk_script(target: Target, directory: Path) -> Path:
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = '{BODY}'",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if target.api_key:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {target.api_key}"')
    path = directory / f"{re.sub(r'[^a-z]', '', target.name.lower())}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(target: Target, concurrency: int, seconds: int, script: Path) -> Measurement:
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), target.url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", output, re.MULTILINE))
    if set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"could not read wrk's output for {target.name}:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(errors_match.group(1)) if errors_match else 0
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return Measurement(target.name, concurrency, rps, _ms(percentiles["50"]), _ms(percentiles["99"]), errors)


def command_line() -> str:
    """How this benchmark was run, for its results file: the results and the command always agree."""
    module = Path(sys.argv[0]).resolve().relative_to(Path(__file__).resolve().parents[2]).with_suffix("")
    return " ".join(["python -m", ".".join(module.parts), *sys.argv[1:]])


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s+:\s+(.+)", cpuinfo.read_text())
        cpu = found.group(1) if found else cpu
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def median(cells: Sequence[Measurement]) -> Measurement:
    """One target at one concurrency over the rounds: the median of each figure; errors are summed."""
    return Measurement(
        cells[0].target,
        cells[0].concurrency,
        statistics.median(m.requests_per_s for m in cells),
        statistics.median(m.p50_ms for m in cells),
        statistics.median(m.p99_ms for m in cells),
        sum(m.errors for m in cells),
    )


def comparisons(rounds: dict[tuple[str, int], list[Measurement]], baselines: list[str]) -> list[str]:
    """ "current vs baseline" per baseline and concurrency, on the medians, with each round's figure."""
    lines = []
    concurrencies = dict.fromkeys(concurrency for _, concurrency in rounds)
    for name in baselines:
        for concurrency in concurrencies:
            current, base = rounds[("hhh-gateway", concurrency)], rounds[(name, concurrency)]
            ours, theirs = median(current).requests_per_s, median(base).requests_per_s
            pairs = zip(current, base, strict=True)
            each = ", ".join(f"{a.requests_per_s:,.0f} vs {b.requests_per_s:,.0f}" for a, b in pairs)
            lines.append(
                f"current vs baseline ({name}): {(ours / theirs - 1) * 100:+.1f} % requests/s at "
                f"concurrency {concurrency} (median {ours:,.0f} vs {theirs:,.0f}; rounds: {each})"
            )
    return lines


def table(results: list[Measurement]) -> str:
    direct = {m.concurrency: m for m in results if m.target.startswith("direct")}
    litellm = {m.concurrency: m for m in results if m.target.startswith("LiteLLM")}
    rows = [
        "| target | concurrency | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| req/s vs LiteLLM | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        base = direct[m.concurrency]
        added = "" if m is base else f"{m.p50_ms - base.p50_ms:+.2f} | {m.p99_ms - base.p99_ms:+.2f}"
        ratio = (
            f"{m.requests_per_s / litellm[m.concurrency].requests_per_s:.1f}x"
            if m.concurrency in litellm
            else ""
        )
        rows.append(
            f"| {m.target} | {m.concurrency} | {m.requests_per_s:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
            f"{added or ' | '} | {ratio if m.target.startswith('hhh-gateway') else ''} | {m.errors} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement (default 8)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM comparison")
    parser.add_argument("--with-recording", action="store_true", help="also measure with event recording on")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="REV",
        help="also measure this commit's gateway, interleaved with the current one (repeatable)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="measure every cell this many times, interleaved, and report medians "
        "(default 2 with --baseline, else 1)",
    )
    args = parser.parse_args()
    rounds = args.rounds if args.rounds is not None else (2 if args.baseline else 1)
    if rounds < 1 or (args.baseline and rounds < 2):
        parser.error("--rounds must be at least 1, and at least 2 with --baseline")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    baselines = list({b.sha: b for b in map(resolve, args.baseline)}.values())  # one target a commit
    current = current_tree() if baselines else ""
    if baselines:  # a run killed with SIGTERM still stops its processes and removes its worktrees
        signal.signal(signal.SIGTERM, _exit_on_sigterm)

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="hhh-bench-") as scratch:
        logs = Path(scratch)
        direct = start_stub(stack, logs)
        stub_base = direct.url.removesuffix("/chat/completions")
        targets = [direct, start_gateway(stack, logs, stub_base)]
        targets += [start_gateway(stack, logs, stub_base, baseline=baseline) for baseline in baselines]
        if args.with_recording:
            targets.append(start_gateway(stack, logs, stub_base, record=True))
        if not args.no_litellm:
            targets.append(start_litellm(stack, logs, stub_base))
        # Every round measures every target in the same order, so the current gateway and the
        # baseline(s) alternate: A, B, A, B ... at each concurrency.
        measured: dict[tuple[str, int], list[Measurement]] = {}
        for concurrency in args.concurrency:
            for round_number in range(1, rounds + 1):
                for target in targets:
                    script = wrk_script(target, logs)
                    run_wrk(
                        target, concurrency, 2, script
                    )  # warm-up: connections, caches, JIT-free but lazy imports
                    result = run_wrk(target, concurrency, args.duration, script)
                    print(
                        f"{result.target:>14}  c={concurrency:<3} {result.requests_per_s:8.0f} req/s  "
                        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
                        + (f"  (round {round_number}/{rounds})" if rounds > 1 else ""),
                        flush=True,
                    )
                    measured.setdefault((target.name, concurrency), []).append(result)
        results = [median(cells) for cells in measured.values()]

    how = f"{args.duration} s per cell, "
    if rounds > 1:
        how += f"{rounds} rounds per cell, interleaved, median over the rounds (errors summed), "
    report = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with `{command_line()}`; wrk, 1 thread, "
        + how
        + "load generator, stub and proxy on the same machine.\n\n"
        + "".join(
            f"Baseline `{b.rev}` = {b.sha} ({b.subject}): that commit's gateway, checked out in a temporary "
            f"worktree, run with the same config and Python environment, measured as `hhh-gateway@{b.short}` "
            f"against `hhh-gateway`, {current}.\n\n"
            for b in baselines
        )
        + table(results)
        + "\n"
        + "".join(
            f"\n{line}\n" for line in comparisons(measured, [f"hhh-gateway@{b.short}" for b in baselines])
        )
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print("\n" + report)


if __name__ == "__main__":
    main()
