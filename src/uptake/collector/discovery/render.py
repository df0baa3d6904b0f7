"""A discovery as text, JSON data, HTML, and as milestones ready to paste.

Every name shown comes from events: the terminal text replaces control characters, the
HTML escapes, and the Python and TOML snippets quote names as literals of their language.
"""

from __future__ import annotations

import html
import re
from typing import Any

from ..settings import toml_value as _toml
from ..wording import pct, printable
from .candidates import Candidate, Discovery

__all__ = [
    "CAUSATION",
    "headline",
    "html_section",
    "lines",
    "milestone_code",
    "settings_entry",
    "to_data",
]

#: The warning every output carries.
CAUSATION = (
    "These are correlations, not causes: users who do this may simply be the ones who "
    "would have stayed anyway. To test one, nudge users toward it with a holdout "
    "(uptake.Nudge(..., holdout=0.1)) and compare retention by assignment."
)

#: The JSON document's schema version (docs/discover.md#json).
SCHEMA_VERSION = 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


def _criteria(c: Candidate) -> dict[str, Any] | None:
    """Return a single candidate's Milestone criteria; None when no Milestone states it."""
    if c.kind == "event" and c.name is not None:
        return {"all_of": [c.name]} if c.count == 1 else {"counts": {c.name: c.count}}
    if c.kind == "features":
        return {"features": c.count}
    if c.kind == "active_days":
        return {"active_days": c.count}
    return None  # one feature: a Milestone counts events, not one feature's uses


def _name(c: Candidate) -> str:
    if c.kind == "pair":
        return "_and_".join(_name(p) for p in c.parts)
    if c.kind == "active_days":
        return f"active_{c.count}_of_{c.days}_days"
    if c.kind == "features":
        return f"features_{c.count}_in_{c.days}d"
    return f"{_slug(c.name or '')}_{c.count}x_{c.days}d"


def milestone_spec(c: Candidate) -> dict[str, Any] | None:
    """Return the Milestone arguments that state a candidate (None when none can).

    A pair needs both parts stated with the same window and neither on active days (a
    Milestone's ``within`` is the rolling window of ``active_days``, not a deadline).
    """
    if c.kind != "pair":
        criteria = _criteria(c)
        return None if criteria is None else {"name": _name(c), **criteria, "within_days": c.days}
    specs = [_criteria(p) for p in c.parts]
    if any(s is None or "active_days" in s for s in specs) or len({p.days for p in c.parts}) > 1:
        return None
    merged: dict[str, Any] = {"name": _name(c)}
    for spec in specs:
        assert spec is not None
        for key, value in spec.items():
            if key == "all_of":
                merged["all_of"] = [*merged.get("all_of", []), *value]
            elif key == "counts":
                merged["counts"] = {**merged.get("counts", {}), **value}
            else:
                merged[key] = value
    merged["within_days"] = c.parts[0].days
    return merged


def _no_milestone(c: Candidate) -> str:
    """Say why no Milestone states a candidate."""
    if c.kind == "feature" or any(p.kind == "feature" for p in c.parts):
        return "a Milestone counts events, not one feature's uses: track it as its own event"
    return "no one Milestone states both (different windows, or active days): declare two"


def milestone_code(c: Candidate, unit: str = "user") -> str | None:
    """Return a ready ``uptake.Milestone(...)`` expression (it uses ``timedelta``)."""
    spec = milestone_spec(c)
    if spec is None:
        return None
    args = [repr(spec["name"])]
    for key in ("all_of", "counts", "features", "active_days"):
        if key in spec:
            args.append(f"{key}={spec[key]!r}")
    args.append(f"within=timedelta(days={spec['within_days']})")
    if unit == "account":
        args.append('scope="account"')
    return f"uptake.Milestone({', '.join(args)})"


def settings_entry(c: Candidate, unit: str = "user") -> str | None:
    """Return the candidate as a ``[[milestones]]`` entry of the settings file (TOML)."""
    spec = milestone_spec(c)
    if spec is None:
        return None
    entry = ["[[milestones]]"]
    entry += [f"{key} = {_toml(value)}" for key, value in spec.items()]
    if unit == "account":
        entry.append('scope = "account"')
    return "\n".join(entry)


def _candidate_data(c: Candidate, unit: str) -> dict[str, Any]:
    return {
        "label": c.label,
        "kind": c.kind,
        "name": c.name,
        "count": c.count,
        "days": c.days,
        "parts": [_candidate_data(p, unit) for p in c.parts],
        "did": c.did,
        "did_retained": c.did_retained,
        "not_did": c.not_did,
        "not_did_retained": c.not_did_retained,
        "reach": c.reach,
        "precision": c.precision,
        "rate_without": c.rate_without,
        "recall": c.recall,
        "phi": c.phi,
        "lift": c.lift,
        "lift_ci95": [c.lift_low, c.lift_high],
        "score": c.score,
        "strong": c.score > 0,
        "weeks": c.weeks,
        "stability": c.stability,
        "milestone": milestone_code(c, unit),
        "settings_entry": settings_entry(c, unit),
    }


def to_data(d: Discovery, *, variants: bool = False) -> dict[str, Any]:
    """Return the discovery as plain data (the ``--json`` document, docs/discover.md#json)."""
    o = d.options
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "unit": o.unit,
        "outcome": {
            "kind": "goal" if o.goal is not None else "retention",
            "goal": o.goal,
            "window": list(o.outcome_window),
            "text": o.describe(),
        },
        "timezone": d.timezone,
        "engine": d.engine,
        "data_end": None if d.data_end is None else d.data_end.isoformat(),
        "cohort": d.cohort,
        "outcome_count": d.outcome,
        "outcome_rate": d.rate,
        "first_signup": None if d.first_signup is None else d.first_signup.isoformat(),
        "last_signup": None if d.last_signup is None else d.last_signup.isoformat(),
        "signup_weeks": d.weeks,
        "options": {
            "days": list(o.days),
            "max_count": o.max_count,
            "min_reach": o.min_reach,
            "min_users": o.min_users,
            "pairs": o.pairs,
        },
        "goal_warning": o.goal_warning,
        "tested": d.tested,
        "z": d.z,
        "candidates": [_candidate_data(c, o.unit) for c in d.candidates],
        "declared": [_candidate_data(c, o.unit) for c in d.declared],
        "not_measured": [{"name": name, "reason": why} for name, why in d.not_measured],
        "warning": CAUSATION,
    }
    if variants:
        data["variants"] = [_candidate_data(c, o.unit) for c in d.variants]
    return data


def _lift(c: Candidate) -> str:
    return f"{c.lift * 100:+.1f} [{c.lift_low * 100:+.1f}, {c.lift_high * 100:+.1f}]"


def _stable(c: Candidate) -> str:
    return "n/a" if c.stability is None else f"{c.stability * 100:.0f}% of {c.weeks}"


def lines(d: Discovery, *, top: int = 15, snippets: int = 3) -> list[str]:
    """Return the discovery as terminal lines: the cohort, the ranked table, milestones to paste."""
    o = d.options
    units = "accounts" if o.unit == "account" else "users"
    out = [
        f"cohort: {d.cohort:,} {units} first seen {d.signup_range} "
        f"({d.weeks} signup weeks; data ends {d.data_end}, {d.timezone})",
        f"outcome: {o.describe()}: {d.outcome:,} ({pct(d.rate, 1)})",
    ]
    if o.goal_warning is not None:
        out.append(f"warning: {o.goal_warning}")
    if not d.cohort:
        end = o.outcome_window[1]
        out.append(
            f"no {units[:-1]} was first seen at least {end} days before the data ends: "
            "nothing to discover yet"
        )
        return [printable(line) for line in out]
    out.append(
        f"{d.tested:,} candidates measured; score = phi at the lift's lower bound, adjusted "
        f"for all of them (z = {d.z:.2f}); above 0 = strong"
    )
    header = (
        "#",
        "candidate",
        "reach",
        "rate if did / not",
        "lift pts [95% CI]",
        "recall",
        "phi",
        "stable weeks",
        "score",
    )
    rows = [
        (
            str(i),
            c.label,
            pct(c.reach, 1),
            f"{pct(c.precision, 1)} / {pct(c.rate_without, 1)}",
            _lift(c),
            pct(c.recall, 0),
            "n/a" if c.phi is None else f"{c.phi:.2f}",
            _stable(c),
            f"{c.score:.3f}",
        )
        for i, c in enumerate(d.candidates[:top], 1)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        out.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if len(d.candidates) > top:
        out.append(f"... {len(d.candidates) - top} more (--top, or --json for all)")
    for c in d.declared:
        out.append(
            f"{c.label}: reach {pct(c.reach, 1)}, rate {pct(c.precision, 1)} / "
            f"{pct(c.rate_without, 1)}, lift {_lift(c)}, score {c.score:.3f}"
        )
    out += [f"declared milestone {name}: not measured: {why}" for name, why in d.not_measured]
    strong = d.strong
    if not strong:
        out.append("no strong candidate: no rule's lift is clearly above 0 for this cohort")
    for i, c in enumerate(strong[:snippets], 1):
        code = milestone_code(c, o.unit)
        out.append(f"top {i}: {c.label}")
        if code is None:
            out.append(f"  ({_no_milestone(c)})")
            continue
        out.append(f"  {code}")
        entry = settings_entry(c, o.unit)
        out += [f"  {line}" for line in (entry or "").splitlines()]
    out.append(CAUSATION)
    return [printable(line) for line in out]


def headline(d: Discovery, *, top: int = 3) -> list[str]:
    """Return a few terminal lines for a report's summary: the cohort and the strongest
    candidates (nothing without a cohort)."""
    if not d.cohort:
        return []
    units = "accounts" if d.options.unit == "account" else "users"
    out = [
        f"what retained users did first: {d.cohort:,} {units} first seen {d.signup_range}, "
        f"{d.options.describe()}: {pct(d.rate, 1)}; {d.tested:,} early behaviours measured, "
        f"{len(d.strong)} strong (correlation: test one with a nudge and a holdout)"
    ]
    for i, c in enumerate(d.strong[:top], 1):
        out.append(
            f"  {i}. {c.label}: {pct(c.precision, 1)} if did vs {pct(c.rate_without, 1)} if "
            f"not, lift {_lift(c)} pts; reach {pct(c.reach, 1)}; score {c.score:.3f}"
        )
    return [printable(line) for line in out]


def html_section(d: Discovery, *, top: int = 10) -> str:
    """Return the report's section "What retained users did first" ("" without a cohort)."""
    if not d.cohort:
        return ""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(v)}</td>"
            for v in (
                c.label,
                pct(c.reach, 1),
                pct(c.precision, 1),
                pct(c.rate_without, 1),
                _lift(c),
                _stable(c),
                milestone_code(c, d.options.unit) or "",
            )
        )
        + "</tr>"
        for c in d.strong[:top]
    )
    units = "accounts" if d.options.unit == "account" else "users"
    intro = (
        f"{d.cohort:,} {units} first seen {d.signup_range}; {d.options.describe()}: "
        f"{pct(d.rate, 1)}. {d.tested:,} early behaviours measured."
    )
    if d.options.goal_warning is not None:
        intro += f" Warning: {d.options.goal_warning}."
    if not rows:
        table = "<p>No early behaviour predicts it clearly (no strong candidate).</p>"
    else:
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "in the first days",
                "reach",
                "retained if did",
                "retained if not",
                "lift pts [95% CI]",
                "same sign in signup weeks",
                "milestone",
            )
        )
        table = (
            f'<table class="discover"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        )
    return (
        '<section id="discover"><h2>What retained users did first</h2>'
        f"<p class=note>{html.escape(intro)}</p>{table}"
        f"<p class=note>{html.escape(CAUSATION)} See <code>uptake discover</code>.</p></section>"
    )
