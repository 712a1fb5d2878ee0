"""From per-round step results to what is reported: medians over rounds, the JSON document, the
markdown tables of docs/benchmarks.md and the plot."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

LATENCY_KEYS = ("p50", "p99", "max")
DOC_BEGIN = "<!-- bench:results:begin (written by python -m bench.run --update-doc) -->"
DOC_END = "<!-- bench:results:end -->"


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 4) if values else 0.0


def _median_latency(steps: Sequence[dict[str, Any]], key: str = "latency_ms") -> dict[str, float]:
    return {q: round(statistics.median(s[key][q] for s in steps), 2) for q in LATENCY_KEYS}


def _step_summary(steps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "transfers_per_s": round(statistics.median(s["transfers_per_s"] for s in steps), 1),
        "transfers_per_s_rounds": [s["transfers_per_s"] for s in steps],
        "latency_ms": _median_latency(steps),
        "batch_latency_ms": _median_latency(steps, "batch_latency_ms"),
        "server_cpu_ms_per_transfer": _median([s["server_cpu_ms_per_transfer"] for s in steps]),
        "loadgen_cpu_ms_per_transfer": _median([s["loadgen_cpu_ms_per_transfer"] for s in steps]),
        "conflicts_per_transfer": _median([s["conflicts"] / max(s["transfers"], 1) for s in steps]),
        "failed": sum(s["failed"] for s in steps),
    }


def aggregate(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds: per concurrency, at each round's peak, and at 50% of the peak."""
    by_concurrency: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rounds:
        for step in r["sweep"]:
            by_concurrency[step["concurrency"]].append(step)
    peaks = [max(r["sweep"], key=lambda s: s["transfers_per_s"]) for r in rounds]
    halves = [r["half_load"] for r in rounds]
    return {
        "by_concurrency": [
            {"concurrency": c, "rounds": len(steps), **_step_summary(steps)}
            for c, steps in sorted(by_concurrency.items())
        ],
        "peak": {
            "concurrency_rounds": [p["concurrency"] for p in peaks],
            "concurrency": int(statistics.median_low(p["concurrency"] for p in peaks)),
            **_step_summary(peaks),
        },
        "half_load": {
            "offered_per_s": round(statistics.median(h["offered_per_s"] for h in halves), 1),
            **_step_summary(halves),
        },
    }


def ratio(ours: dict[str, Any], etcd: dict[str, Any]) -> dict[str, Any]:
    our_rounds = ours["peak"]["transfers_per_s_rounds"]
    etcd_rounds = etcd["peak"]["transfers_per_s_rounds"]
    return {
        "peak_throughput_ours_over_etcd": round(
            ours["peak"]["transfers_per_s"] / max(etcd["peak"]["transfers_per_s"], 1e-9), 2
        ),
        "per_round": [round(a / max(b, 1e-9), 2) for a, b in zip(our_rounds, etcd_rounds, strict=False)],
        "server_cpu_per_transfer_etcd_over_ours": round(
            etcd["peak"]["server_cpu_ms_per_transfer"] / max(ours["peak"]["server_cpu_ms_per_transfer"], 1e-9), 2
        ),
    }


# -- markdown -------------------------------------------------------------------------------------


def _lat(d: dict[str, float]) -> str:
    return " / ".join(f"{d[q]:g}" for q in LATENCY_KEYS)


_HEADLINE_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("peak throughput (transfers/s)", lambda s: f"{s['peak']['transfers_per_s']:,.0f}"),
    ("... reached at concurrency (requests in flight)", lambda s: str(s["peak"]["concurrency"])),
    ("latency at peak, p50 / p99 / max (ms)", lambda s: _lat(s["peak"]["latency_ms"])),
    ("latency at 50% of peak, p50 / p99 / max (ms)", lambda s: _lat(s["half_load"]["latency_ms"])),
    ("server CPU per transfer at peak (ms, all 3 members)", lambda s: f"{s['peak']['server_cpu_ms_per_transfer']:.3f}"),
    ("load generator CPU per transfer at peak (ms)", lambda s: f"{s['peak']['loadgen_cpu_ms_per_transfer']:.3f}"),
    ("compare-and-set conflicts per transfer at peak", lambda s: f"{s['peak']['conflicts_per_transfer']:.3f}"),
    ("failed transfers (all sweep steps)", lambda s: str(sum(c["failed"] for c in s["by_concurrency"]))),
    ("balances conserved (sum and count unchanged, none negative)", lambda s: _yes(s["conservation"])),
]


def markdown(results: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md, from results.json alone (so a re-run rewrites them)."""
    ours, etcd = results["systems"]["walletcluster"], results["systems"]["etcd"]
    m, w = results["machine"], results["workload"]
    fs = m["filesystem"]
    lines = [
        f"Run of {results['generated']} (commit {results['commit']}, `{results['command']}`, "
        f"{results['mode']} mode, {results['total_seconds']:.0f} s).",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores{' (virtual machine)' if m['virtualised'] else ''}, "
        f"{m['ram_gib']} GiB RAM, {fs['type']} on {fs['device']} (4 KiB write+fsync p50 {m['fsync_4k_ms']['p50']} ms), "
        f"Linux {m['kernel']} ({m['os']}), Python {m['python']}, etcd {m['etcd']}. "
        f"Load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end')}.",
        "",
        f"Workload: {w['accounts']:,} accounts, random pairs, amount {w['amount']}, {w['batch_size']} transfers "
        f"per request, {w['step_seconds']:g} s per step, {w['rounds']} rounds alternating the systems; "
        "medians over rounds.",
        "",
        "| | walletcluster | etcd |",
        "|---|---:|---:|",
        *(f"| {label} | {fmt(ours)} | {fmt(etcd)} |" for label, fmt in _HEADLINE_ROWS),
        "",
        f"**Throughput ratio walletcluster / etcd at peak: {results['ratio']['peak_throughput_ours_over_etcd']}** "
        f"(per round: {results['ratio']['per_round']}); etcd spends "
        f"{results['ratio']['server_cpu_per_transfer_etcd_over_ours']}x our server CPU per transfer.",
        "",
        "Throughput (transfers/s) by concurrency, median over rounds:",
        "",
        "| concurrency | walletcluster | etcd |",
        "|---:|---:|---:|",
    ]
    ours_c = {s["concurrency"]: s for s in ours["by_concurrency"]}
    etcd_c = {s["concurrency"]: s for s in etcd["by_concurrency"]}
    for c in sorted(set(ours_c) | set(etcd_c)):
        a = f"{ours_c[c]['transfers_per_s']:,.0f}" if c in ours_c else "-"
        b = f"{etcd_c[c]['transfers_per_s']:,.0f}" if c in etcd_c else "-"
        lines.append(f"| {c} | {a} | {b} |")
    mem = results["memory_per_account"]
    lines += [
        "",
        "walletcluster only:",
        "",
        "| accounts | node RSS (MiB, 3 nodes) | bytes per account |",
        "|---:|---|---:|",
        f"| 0 | {', '.join(f'{x:g}' for x in mem['empty_node_rss_mib_per_node'])} | - |",
    ]
    for s in mem["sizes"]:
        rss = ", ".join(f"{x:g}" for x in s["rss_mib_per_node"])
        lines.append(f"| {s['accounts']:,} | {rss} | {s['bytes_per_account']:,.0f} |")
    lines += ["", "| fresh replica catching up from a snapshot of | snapshot (MiB) | time |", "|---:|---:|---|"]
    for c in results["catch_up"]["sizes"]:
        lines.append(f"| {c['accounts']:,} accounts | {c['snapshot_mib']:g} | {_catch_up_time(c)} |")
    fo = results["failover"]
    lines += [
        "",
        f"Leader SIGKILL to the first accepted write: median **{fo['median_s']} s**, max {fo['max_s']} s "
        f"(runs: {fo['runs']}).",
    ]
    return "\n".join(lines) + "\n"


def _catch_up_time(c: dict[str, Any]) -> str:
    if c["completed"]:
        return f"**{c['seconds']} s**"
    return (
        f"**did not finish**: gave up after {c['gave_up_after_s']} s; {c['elections_during_catch_up']} elections "
        f"meanwhile, at most {c['most_snapshot_mib_received']} MiB of the snapshot received"
    )


def _yes(conservation: dict[str, Any]) -> str:
    return "yes" if conservation["conserved"] else f"NO ({conservation})"


def update_doc(path: str, fragment: str) -> None:
    """Replace what stands between the markers in `path` with `fragment`."""
    with open(path) as f:
        text = f.read()
    if DOC_BEGIN not in text or DOC_END not in text:
        raise ValueError(f"{path} lacks the markers {DOC_BEGIN!r} ... {DOC_END!r}")
    head, rest = text.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{DOC_BEGIN}\n{fragment}{DOC_END}{tail}")


# -- plot -----------------------------------------------------------------------------------------

COLOURS = {"walletcluster": "#3b7dd8", "etcd": "#d8643b"}


def plot(results: dict[str, Any], path: str) -> None:
    """Throughput vs concurrency (median, with the rounds' range), latency percentiles at 50% and
    at peak load, and CPU per transfer, for both systems."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = results["systems"]
    fig, (tput, lat, cpu) = plt.subplots(1, 3, figsize=(16, 4.8))
    for name, data in systems.items():
        rows = data["by_concurrency"]
        xs = [r["concurrency"] for r in rows]
        tput.plot(xs, [r["transfers_per_s"] for r in rows], "o-", color=COLOURS[name], label=name)
        tput.fill_between(
            xs,
            [min(r["transfers_per_s_rounds"]) for r in rows],
            [max(r["transfers_per_s_rounds"]) for r in rows],
            color=COLOURS[name],
            alpha=0.15,
        )
    tput.set_xscale("log", base=2)
    tput.set_yscale("log")
    tput.set_xlabel(f"concurrency (requests of {results['workload']['batch_size']} transfers in flight)")
    tput.set_ylabel("transfers / s (log)")
    tput.set_title("Throughput vs concurrency (median; band: rounds' range)")
    tput.legend()

    groups = [(f"{name}\n50% load", data["half_load"]) for name, data in systems.items()]
    groups += [(f"{name}\npeak", data["peak"]) for name, data in systems.items()]
    width = 0.25
    for k, q in enumerate(LATENCY_KEYS):
        lat.bar(
            [i + (k - 1) * width for i in range(len(groups))], [g[1]["latency_ms"][q] for g in groups], width, label=q
        )
    lat.set_xticks(range(len(groups)), [g[0] for g in groups])
    lat.set_yscale("log")
    lat.set_ylabel("transfer latency (ms, log)")
    lat.set_title("Latency percentiles")
    lat.legend()

    names = list(systems)
    server = [systems[n]["peak"]["server_cpu_ms_per_transfer"] for n in names]
    client = [systems[n]["peak"]["loadgen_cpu_ms_per_transfer"] for n in names]
    cpu.bar(names, server, color=[COLOURS[n] for n in names], label="servers (3 members)")
    cpu.bar(names, client, bottom=server, color="#999999", label="load generator")
    for i, (s, c) in enumerate(zip(server, client, strict=True)):
        cpu.annotate(f"{s:.3f} + {c:.3f}", (i, s + c), ha="center", va="bottom")
    cpu.set_ylabel("CPU ms per transfer")
    cpu.set_title("CPU per transfer at peak")
    cpu.legend()
    m = results["machine"]
    fig.suptitle(
        f"walletcluster vs etcd {m['etcd']}: {results['workload']['accounts']:,} accounts, fsync on, "
        f"{m['cores']} cores ({m['cpu_model']}), {results['generated'][:10]}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
