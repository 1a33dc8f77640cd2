"""`curate plan` output: the human table and the PNG plot, both from the plan-file dict."""
from __future__ import annotations

from pathlib import Path


def _num(x) -> str:
    if x is None:
        return "-"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:,.4g}"


def render_text(result: dict) -> str:
    lines: list[str] = []
    metric = result["metric"]
    plan = result.get("plan")
    if plan is not None:
        head = f"plan for a budget of {_num(plan['budget'])} {result['unit']} ({result['kind']} law"
        head += ", top-m mixtures only)" if result["top_m_only"] else ")"
        lines.append(head)
        if plan.get("params") is not None:
            lines.append(f"model size: {_num(plan['params'])} parameters, "
                         f"{_num(plan['draws'])} samples/tokens drawn")
        quality = result.get("quality") or {}
        head = f"{'pool':<16}{'weight':>9}{'samples':>14}{'unique':>14}{'epochs':>9}{'cap':>9}"
        lines.append(head + (f"{'quality':>9}" if quality else ""))
        for row in plan["pools"]:
            if row["weight"] <= 0:
                continue
            cap = row.get("epoch_cap")
            cap_s = "-" if cap is None else _num(cap) + ("*" if row.get("cap_binding") else " ")
            line = (f"{row['pool']:<16}{row['weight']:>9.4f}{_num(row['samples']):>14}"
                    f"{_num(row['unique']):>14}{_num(row['epochs']):>9}{cap_s:>9}")
            if quality:
                line += f"{_num(quality.get(row['pool'])):>9}"
            lines.append(line)
        unused = [r["pool"] for r in plan["pools"] if r["weight"] <= 0]
        if unused:
            lines.append(f"unused: {', '.join(unused)}")
        lines.append(_caps_line(result, plan))
        if plan.get("top_m_order"):
            lines.append(f"pools by predicted {metric} alone at this budget: "
                         f"{', '.join(plan['top_m_order'])}")
        pred = f"predicted {metric}: {plan['predicted']:.6f}"
        if plan.get("interval"):
            lo, hi = plan["interval"]
            level = (result.get("robustness") or {}).get("level", 0.9)
            pred += f"  ({level:.0%} bootstrap interval {lo:.6f} .. {hi:.6f})"
        lines.append(pred)
        sat = plan.get("saturation")
        if sat:
            lines.append(f"doubling the budget: predicted gain {sat['gain_at_double_budget']:.3g} "
                         f"({sat['relative_gain']:.2%})"
                         + ("  -- saturated" if sat["saturated"] else ""))
        lines.append("baselines:")
        for b in plan["baselines"].values():
            delta = b["loss"] - plan["predicted"]
            note = "" if b["feasible"] else "  (violates the constraints)"
            lines.append(f"  {b['name']:<36}{b['loss']:.6f}  ({delta:+.6f}){note}")
        agreement = result.get("seed_agreement")
        if agreement:
            lines.append(f"probe seeds: {agreement['why']}")
        claim = plan.get("claim")
        if claim:
            label = "the plan" if claim["recommended"] == "plan" else \
                plan["baselines"][claim["recommended"]]["name"]
            lines.append(f"recommendation: {label} -- {claim['why']}")
        rob = result.get("robustness")
        if rob:
            lines.append(f"robustness over {rob['draws']} bootstrap draws: the plan is within "
                         f"{rob['tolerance']:.1%} of each draw's optimum in {rob['stays_optimal']:.0%} "
                         f"of draws; the draws choose the same mixture in {rob['same_choice']:.0%}")
    sweep = result.get("sweep")
    if sweep is not None:
        if lines:
            lines.append("")
        lines.append(f"sweep over {len(sweep['plans'])} budgets ({result['unit']}):")
        lines.append(f"{'budget':>12}  {'predicted':>10}  {'best top-m':>10}  mixture")
        for row in sweep["plans"]:
            top = row.get("best_top_m")
            lines.append(f"{_num(row['budget']):>12}  {row['predicted']:>10.6f}  "
                         f"{(f'{top:.6f}' if top is not None else '-'):>10}  {row['mixture']}")
        if sweep["switches"]:
            lines.append("the choice switches at:")
            for s in sweep["switches"]:
                lines.append(f"  {_num(s['budget'])} {result['unit']}: {s['from']} -> {s['to']}")
        else:
            lines.append("the choice does not switch in this range")
        if sweep.get("infeasible"):
            lines.append(f"{len(sweep['infeasible'])} budget(s) from "
                         f"{_num(sweep['infeasible'][0]['budget'])} cannot be planned: "
                         f"{sweep['infeasible'][0]['reason']}")
    return "\n".join(lines)


def _caps_line(result: dict, plan: dict) -> str:
    c = result.get("constraints") or {}
    source = c.get("epoch_cap_source")
    measured = c.get("measured_max_epochs")
    if source is None:
        text = "epoch caps: none (the law carries no measured epoch range)"
    elif source == "fit data":
        text = f"epoch caps: from the law's fit data (measured up to {_num(measured)} epochs)"
    else:
        text = f"epoch caps: --max-epochs {_num(c.get('max_epochs'))}"
        if measured is not None:
            text += f" (the fit data reach {_num(measured)} epochs)"
    binding = plan.get("cap_binding") or []
    return text + (f"; binding (*) for {', '.join(binding)}" if binding else "")


def plot(result: dict, path: Path) -> None:
    """Sweep: weights per pool (stacked) and predicted loss vs budget; plan: weights and epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep, plan = result.get("sweep"), result.get("plan")
    if sweep is not None:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
        budgets = [r["budget"] for r in sweep["plans"]]
        pools = list(sweep["plans"][0]["weights"])
        stack = [[r["weights"][p] for r in sweep["plans"]] for p in pools]
        ax1.stackplot(budgets, stack, labels=pools)
        ax1.set_ylabel("mixture weight")
        ax1.set_ylim(0, 1)
        ax1.legend(loc="upper left", fontsize="small", ncol=2)
        ax2.plot(budgets, [r["predicted"] for r in sweep["plans"]], label="optimal mixture")
        tops = [r.get("best_top_m") for r in sweep["plans"]]
        if all(t is not None for t in tops):
            ax2.plot(budgets, tops, "--", label="best top-m")
        ax2.set_ylabel(f"predicted {result['metric']}")
        ax2.set_xlabel(f"budget ({result['unit']})")
        ax2.legend(fontsize="small")
        for ax in (ax1, ax2):
            ax.set_xscale("log")
            for s in sweep["switches"]:
                ax.axvline(s["budget"], color="grey", lw=0.8, ls=":")
        ax1.set_title("optimal pool mixture across budgets")
    else:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        rows = plan["pools"]
        names = [r["pool"] for r in rows]
        ax1.bar(names, [r["weight"] for r in rows])
        ax1.set_ylabel("weight")
        ax1.set_title(f"mixture for {plan['budget']:.3g} {result['unit']}")
        ax1.tick_params(axis="x", rotation=45)
        labels = ["plan"] + [b["name"] for b in plan["baselines"].values()]
        values = [plan["predicted"]] + [b["loss"] for b in plan["baselines"].values()]
        ax2.barh(labels, values)
        ax2.set_xlabel(f"predicted {result['metric']}")
        lo = min(values)
        ax2.set_xlim(lo - 0.05 * abs(lo), max(values) + 0.02 * abs(lo))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
