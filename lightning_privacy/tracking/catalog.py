"""What a user can pick, by the short names of the config files (``conf/defense/dpsgd.yaml`` -> ``dpsgd``), each
with one line; and command-line parse errors turned into one line that says what was wrong and what to pick."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = {"model": "defense", "data": "data"}
"""Config key -> the folder of ``conf/`` that holds its choices."""


def conf_dir() -> Optional[Path]:
    """``conf/`` of a source checkout, else of the working directory, else None (an installed package)."""
    for path in (CONF, Path.cwd() / "conf"):
        if path.is_dir():
            return path
    return None


def _one_line(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _comment(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    return lines[0] if lines else ""


def _class_doc(class_path: str) -> str:
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        doc = getattr(importlib.import_module(module), name).__doc__ or ""
    except (ImportError, AttributeError):
        return ""
    return doc.strip().split("\n\n")[0]


def choices(folder: str) -> dict[str, str]:
    """``conf/<folder>/*.yaml`` short name -> one line: the file's leading comment, else its class's docstring."""
    root = conf_dir()
    if root is None or not (root / folder).is_dir():
        return {}
    out = {}
    for path in sorted((root / folder).glob("*.yaml")):
        line = _comment(path)
        if not line:
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                data = {}
            key = next((k for k, v in GROUPS.items() if v == folder), None)
            class_path = (data.get(key) or {}).get("class_path", "") if key and isinstance(data, dict) else ""
            name = class_path.rpartition(".")[2]
            doc = _class_doc(class_path) if class_path else ""
            line = f"{name}: {doc}" if doc else name
        out[path.stem] = _one_line(line or path.stem)
    return out


def choice_names(key: str) -> str:
    folder = GROUPS[key]
    names = ", ".join(choices(folder)) or "(no conf/ folder found)"
    return f"pick one with --config conf/{folder}/NAME.yaml, NAME one of: {names}"


_KEY = re.compile(r'Parser key "([^"]+)"')
_GIVEN = re.compile(r"Given value: (.*)")
_NOISE = ("Expected a <class 'NoneType'>", "Does not validate against any of", "Subtypes:", "Errors:",
          "Given value", "Problem with given class_path")


def explain(message: str) -> str:
    """One line from jsonargparse's multi-line parse error: the option, the value given, why it was refused and,
    for an unknown ``--model``/``--data`` class, the choices by their config names."""
    keys = [k for k in _KEY.findall(message)]
    top = keys[0] if keys else ""
    given = _GIVEN.findall(message)
    value = given[0].strip() if given else ""
    if top in GROUPS and ("dot import path" in message or "not accessible" in message):
        what = "defense" if top == "model" else "dataset"
        return f"--{top} {value}: no such {what} class; {choice_names(top)} (or give a class path)"
    option = ".".join(dict.fromkeys(k for k in keys if k not in ("init_args",)))
    if len(keys) > 1 and top in GROUPS:
        option = f"{top}.init_args.{'.'.join(keys[1:])}"
    reasons = []
    for line in message.splitlines():
        line = line.strip().lstrip("- ").strip()
        if line and not line.startswith(_NOISE) and not _KEY.match(line) and line not in reasons:
            reasons.append(line)
    reason = "; ".join(reasons[:3]) or message.strip().splitlines()[0]
    if option:
        return f"--{option}" + (f" {value}" if value else "") + f": {reason}"
    return _one_line(reason, 300)


def _section(title: str, entries: dict[str, str], how: str) -> str:
    width = max((len(k) for k in entries), default=0)
    lines = [f"{title} ({how}):"] + [f"  {name:<{width}}  {line}" for name, line in entries.items()]
    return "\n".join(lines)


def overview(audits: dict[str, str]) -> str:
    """The tool in a sentence, then the defenses, datasets and audits one line each (``--help``)."""
    return "\n\n".join([
        "Train, defend and attack models for membership privacy: one command trains a defense on a dataset's "
        "member role, tests it, audits it (membership-inference attacks, AOP, empirical ε) and logs one MLflow run.",
        "Example: lightning-privacy fit --config conf/experiments/quickstart.yaml",
        _section("defenses", choices("defense"), "--config conf/defense/NAME.yaml"),
        _section("datasets", choices("data"), "--config conf/data/NAME.yaml"),
        _section("audit presets", choices("audit"), "--config conf/audit/NAME.yaml"),
        _section("audit kinds", audits, "--audit.KIND.* options"),
    ])
