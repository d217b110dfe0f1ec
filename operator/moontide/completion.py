"""Shell completion scripts for the ``moontide`` command, read off its argument parser.

``moontide completion bash|zsh|fish`` prints one; they complete command names,
each command's flags and the choices of flags that have them (``-o json``).
"""

from __future__ import annotations

import argparse

__all__ = ["script"]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings)


def _choices(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    return {o: [str(c) for c in a.choices] for a in parser._actions if a.choices and a.option_strings
            for o in a.option_strings}


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    commands = _commands(parser)
    top = _flags(parser)
    if shell == "fish":
        lines = ["complete -c moontide -f"]
        names = " ".join(commands)
        lines.append(f"complete -c moontide -n 'not __fish_seen_subcommand_from {names}' -a '{names}'")
        for name, sp in commands.items():
            for flag in _flags(sp):
                opt = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
                choices = _choices(sp).get(flag)
                extra = f" -r -a '{' '.join(choices)}'" if choices else ""
                lines.append(f"complete -c moontide -n '__fish_seen_subcommand_from {name}' {opt}{extra}")
        return "\n".join(lines)
    cases = []
    for name, sp in commands.items():
        choice_cases = "".join(f"            {flag}) COMPREPLY=($(compgen -W '{' '.join(c)}' -- \"$cur\")); return;;\n"
                               for flag, c in _choices(sp).items())
        positional = [str(c) for a in sp._actions if not a.option_strings and a.choices for c in a.choices]
        cases.append(f"        {name})\n          case \"$prev\" in\n{choice_cases}          esac\n"
                     f"          COMPREPLY=($(compgen -W '{' '.join(_flags(sp) + positional)}' -- \"$cur\"));;\n")
    bash = f"""_moontide() {{
  local cur prev cmd i
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break;; esac
  done
  if [[ -z "$cmd" ]]; then
    COMPREPLY=($(compgen -W '{' '.join([*commands, *top])}' -- "$cur"))
    return
  fi
  case "$cmd" in
{''.join(cases)}  esac
  if [[ ${{#COMPREPLY[@]}} -eq 0 ]]; then COMPREPLY=($(compgen -f -- "$cur")); fi
}}
complete -F _moontide moontide"""
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + bash
    return bash
