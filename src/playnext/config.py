"""One typed configuration base: dataclasses read from dicts, TOML files and `key=value` flags.

Every setting a user can write (a model's hyper-parameters, the training loop's, a recipe's
run options) is a field of a `Config` dataclass. `from_dict` is the one place where outside
values are checked: an unknown key is refused with the known ones (and the closest match),
a value of the wrong type names the field and the type, and `validate` then checks ranges.
A TOML value already has its type; a command-line string is converted by the field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, ClassVar, Self

from playnext.errors import ConfigError


def require(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless `cond`: the one-line range check of `validate`."""
    if not cond:
        raise ConfigError(message)


def choice(value: Any, allowed: typing.Iterable[Any], name: str) -> None:
    allowed = tuple(allowed)
    require(value in allowed, f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


@dataclasses.dataclass
class Config:
    """Base of every typed config. Subclasses are dataclasses with a default for every field."""

    # fields a subclass accepts but that do not describe the thing being configured (verbosity);
    # left out of fingerprints and recipe comparisons
    run_only: ClassVar[frozenset[str]] = frozenset()

    def validate(self) -> None:
        """Raise ConfigError on impossible values, before any work starts."""

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, params: typing.Mapping[str, Any], *, where: str = "") -> Self:
        """A validated config from `params`; `where` (a file, a flag) prefixes every error."""
        prefix = f"{where}: " if where else ""
        types_ = cls.field_types()
        unknown = sorted(set(params) - set(types_))
        if unknown:
            close = [m for k in unknown for m in difflib.get_close_matches(k, types_, n=1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"{prefix}{cls.__name__}: unknown field(s) {', '.join(unknown)}{hint}; "
                f"known: {', '.join(sorted(types_))}"
            )
        values = {k: convert(v, types_[k], f"{prefix}{cls.__name__}.{k}") for k, v in params.items()}
        cfg = cls(**values)
        try:
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{prefix}{cls.__name__}: {e}") from None
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` applied through `from_dict` (so they are checked too)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def convert(value: Any, annotation: Any, name: str) -> Any:
    """`value` as the field type `annotation`; strings (flags) are parsed, typed values checked."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(annotation)):
            return None
        errors = []
        for option in options:
            try:
                return convert(value, option, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: cannot read {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return origin(convert(v, inner, name) for v in value)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def parse_value(text: str) -> Any:
    """A `key=value` flag's value with its likely type: int, float, bool, else the string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_pairs(pairs: typing.Iterable[str] | None, what: str) -> dict[str, Any]:
    """`["a=1", "b-c=x"]` → `{"a": 1, "b_c": "x"}`; a pair without `=` is refused naming `what`."""
    out: dict[str, Any] = {}
    for p in pairs or []:
        if "=" not in p:
            raise ConfigError(f"{what} {p!r}: expected key=value")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = parse_value(v.strip())
    return out
