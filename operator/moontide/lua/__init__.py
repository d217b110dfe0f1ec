"""The sandboxed Lua runtime: lupa with no way back to Python, modules, code identity."""

from .code import LuaCode, instantiate
from .runtime import Done, Failed, Runtime, Thread, Yield, check_syntax

__all__ = ["Done", "Failed", "LuaCode", "Runtime", "Thread", "Yield", "check_syntax", "instantiate"]
