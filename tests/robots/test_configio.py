"""configio: YAML -> frozen dataclasses, unknown keys and wrong types rejected with dotted paths,
and `key=value` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from gaitforge.robots.configio import (
    ConfigError,
    apply_overrides,
    deep_merge,
    from_dict,
    load_yaml,
    to_dict,
)


@dataclass(frozen=True)
class Inner:
    count: int = 1
    rate: float = 0.5
    enabled: bool = True

    def __post_init__(self):
        if self.count < 0:
            raise ValueError("count must be >= 0")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = Inner()
    pair: tuple[float, float] = (0.0, 1.0)
    many: tuple[int, ...] = ()
    mode: Literal["fast", "slow"] = "fast"
    maybe: float | None = None
    table: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Required:
    must: float


SOURCE = "configs/test.yaml"


def build(data):
    return from_dict(Outer, data, source=SOURCE)


def test_defaults_and_frozen():
    cfg = build({})
    assert cfg == Outer()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "y"


def test_nested_values_are_coerced():
    cfg = build({"name": "dog", "inner": {"count": 3, "rate": 2, "enabled": False},
                 "pair": [1, 2.5], "many": [4, 5, 6], "mode": "slow", "maybe": 3,
                 "table": {"a": 1, "b": 0.25}})
    assert cfg.inner == Inner(count=3, rate=2.0, enabled=False)
    assert type(cfg.inner.rate) is float  # an integer YAML value becomes a float field
    assert cfg.pair == (1.0, 2.5) and type(cfg.pair) is tuple
    assert all(type(v) is float for v in cfg.pair)
    assert cfg.many == (4, 5, 6)
    assert cfg.mode == "slow"
    assert cfg.maybe == 3.0 and type(cfg.maybe) is float
    assert cfg.table == {"a": 1.0, "b": 0.25}
    assert build({"maybe": None}).maybe is None


def test_unknown_key_is_named_with_its_dotted_path_and_file():
    with pytest.raises(ConfigError) as err:
        build({"inner": {"count": 2, "colour": "red"}})
    message = str(err.value)
    assert "'inner.colour'" in message
    assert SOURCE in message
    assert "count, enabled, rate" in message  # the known keys, sorted
    with pytest.raises(ConfigError, match=r"unknown key 'speed'"):
        build({"speed": 1.0})


@pytest.mark.parametrize(("data", "path"), [
    ({"inner": {"count": "3"}}, "inner.count"),  # string for int
    ({"inner": {"count": 2.0}}, "inner.count"),  # float for int
    ({"inner": {"count": True}}, "inner.count"),  # bool is not an int here
    ({"inner": {"rate": "fast"}}, "inner.rate"),  # not a number
    ({"inner": {"rate": False}}, "inner.rate"),  # bool is not a number
    ({"inner": {"enabled": "yes"}}, "inner.enabled"),  # only true/false
    ({"name": 3}, "name"),
    ({"pair": 1.0}, "pair"),  # not a list
    ({"pair": [1.0, 2.0, 3.0]}, "pair"),  # wrong length
    ({"pair": [1.0, "x"]}, "pair[1]"),
    ({"many": [1, 2.5]}, "many[1]"),
    ({"mode": "medium"}, "mode"),  # not one of the Literal values
    ({"table": [1, 2]}, "table"),
    ({"table": {"a": "b"}}, "table.a"),
    ({"inner": 3}, "inner"),  # a section must be a mapping
])
def test_wrong_types_are_rejected_with_the_path(data, path):
    with pytest.raises(ConfigError) as err:
        build(data)
    message = str(err.value)
    assert f"'{path}'" in message, message
    assert SOURCE in message


def test_literal_error_lists_the_choices():
    with pytest.raises(ConfigError, match=r"must be one of \['fast', 'slow'\], got 'medium'"):
        build({"mode": "medium"})


def test_post_init_and_missing_fields_become_config_errors():
    with pytest.raises(ConfigError) as err:
        build({"inner": {"count": -1}})
    assert "inner" in str(err.value) and "count must be >= 0" in str(err.value)
    with pytest.raises(ConfigError) as err:
        from_dict(Required, {}, source=SOURCE)
    assert "'must'" in str(err.value) and SOURCE in str(err.value)
    with pytest.raises(ConfigError, match="must be a mapping"):
        from_dict(Outer, [1, 2], source=SOURCE)


def test_exponent_without_a_dot_is_a_float(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-3` as the string '1e-3'; a float field must still take it."""
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  rate: 1e-3\npair: [2e1, 1.5e-2]\nmaybe: 5E-1\n")
    data = load_yaml(path)
    assert data["inner"]["rate"] == "1e-3"  # the YAML quirk this guards against
    cfg = from_dict(Outer, data, source=str(path))
    assert cfg.inner.rate == 0.001 and type(cfg.inner.rate) is float
    assert cfg.pair == (20.0, 0.015)
    assert cfg.maybe == 0.5
    with pytest.raises(ConfigError, match="'name' must be a string"):
        build({"name": 1e-3})  # the other way round: a number is not a string
    # a string field keeps a numeric-looking string as it is
    assert build({"name": "1e-3"}).name == "1e-3"


def test_load_yaml_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_yaml(bad)
    assert str(bad) in str(err.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}


def test_apply_overrides_sets_a_nested_key_without_touching_the_input():
    data = {"a": {"b": 1, "c": 3}, "d": [1, 2]}
    out = apply_overrides(data, ["a.b=2"])
    assert out == {"a": {"b": 2, "c": 3}, "d": [1, 2]}
    assert data == {"a": {"b": 1, "c": 3}, "d": [1, 2]}  # input untouched


@pytest.mark.parametrize(("item", "expected"), [
    ("a.b=2", {"a": {"b": 2}}),
    ("a.b=1e-3", {"a": {"b": 0.001}}),  # a float, not the string '1e-3'
    ("a.b=2.5", {"a": {"b": 2.5}}),
    ("a.b=true", {"a": {"b": True}}),
    ("a.b=[1, 2]", {"a": {"b": [1, 2]}}),  # lists replace whole
    ("a.b=walk", {"a": {"b": "walk"}}),
    ("a.b=", {"a": {"b": ""}}),
    ("x.y.z=0", {"a": {"b": [9]}, "x": {"y": {"z": 0}}}),
])
def test_apply_overrides_parses_values_as_yaml(item, expected):
    assert apply_overrides({"a": {"b": [9]}}, [item]) == expected


def test_apply_overrides_then_from_dict():
    cfg = from_dict(Outer, apply_overrides(to_dict(Outer()), ["inner.rate=1e-3", "mode=slow",
                                                              "pair=[3, 4]"]))
    assert cfg.inner.rate == 0.001 and cfg.mode == "slow" and cfg.pair == (3.0, 4.0)


@pytest.mark.parametrize("item", ["novalue", "=3"])
def test_apply_overrides_rejects_malformed_items(item):
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, [item])


def test_deep_merge_and_to_dict_round_trip():
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}, "k": 1}, {"a": {"c": [3]}}) == {
        "a": {"b": 1, "c": [3]}, "k": 1}
    cfg = build({"pair": [1, 2], "many": [3], "table": {"t": 1.0}})
    plain = to_dict(cfg)
    assert plain["pair"] == [1.0, 2.0] and plain["inner"] == {"count": 1, "rate": 0.5,
                                                              "enabled": True}
    assert build(plain) == cfg


# --- tagged unions: a Union of dataclasses that each declare `name: Literal[...]` ---

@dataclass(frozen=True)
class Base:
    name: str = ""
    rate: float = 1.0


@dataclass(frozen=True)
class Walker(Base):
    name: Literal["walker"] = "walker"
    legs: int = 2


@dataclass(frozen=True)
class Roller(Base):
    name: Literal["roller", "wheel"] = "roller"
    wheels: int = 4


@dataclass(frozen=True)
class Machine:
    body: Walker | Roller = Roller()  # without a name: a Roller, as the default says
    spare: Walker | Roller | None = None
    pair: tuple[Walker | Roller, ...] = ()  # no field default to fall back on


def machine(data):
    return from_dict(Machine, data, source=SOURCE)


def test_tagged_union_is_resolved_by_name():
    m = machine({"body": {"name": "walker", "legs": 6, "rate": 2}})
    assert m.body == Walker(legs=6, rate=2.0) and type(m.body.rate) is float
    assert machine({"body": {"name": "wheel"}}).body == Roller(name="wheel")
    assert machine({"body": {"name": "roller", "wheels": 3}}).body == Roller(wheels=3)
    assert machine({"spare": None}).spare is None
    assert machine({"spare": {"name": "walker"}}).spare == Walker()
    assert machine({"pair": [{"name": "walker"}, {"name": "roller"}]}).pair == (Walker(),
                                                                               Roller())
    assert machine({"body": Walker(legs=4)}).body == Walker(legs=4)  # already built
    # the YAML stays flat, and to_dict writes it back that way
    m = machine({"body": {"name": "walker", "legs": 3}})
    assert to_dict(m)["body"] == {"name": "walker", "rate": 1.0, "legs": 3}
    assert machine(to_dict(m)) == m


def test_tagged_union_without_a_name_takes_the_default_class():
    assert machine({}).body == Roller()
    assert machine({"body": {"wheels": 6}}).body == Roller(wheels=6)
    # the default picks the class; the other class's fields are then unknown keys
    with pytest.raises(ConfigError, match=r"unknown key 'body.legs' in Roller"):
        machine({"body": {"legs": 6}})


def test_tagged_union_without_a_name_or_a_default_is_an_error():
    for data, path in (({"spare": {"legs": 2}}, "spare.name"),
                       ({"pair": [{"name": "walker"}, {"legs": 2}]}, "pair[1].name")):
        with pytest.raises(ConfigError) as err:
            machine(data)
        message = str(err.value)
        assert f"'{path}' is required (known: roller, walker, wheel)" in message, message
        assert SOURCE in message


@pytest.mark.parametrize("name", ["runner", 3, None, ""])
def test_tagged_union_unknown_name_lists_the_known_ones(name):
    with pytest.raises(ConfigError) as err:
        machine({"body": {"name": name, "legs": 2}})
    message = str(err.value)
    assert "'body.name'" in message and SOURCE in message
    assert f"unknown body {name!r} (known: roller, walker, wheel)" in message, message


def test_tagged_union_other_errors_keep_their_paths():
    with pytest.raises(ConfigError, match=r"'body' must be a mapping"):
        machine({"body": [1, 2]})
    with pytest.raises(ConfigError, match=r"'body.legs' must be an integer"):
        machine({"body": {"name": "walker", "legs": "six"}})


def test_a_union_that_is_not_tagged_keeps_the_old_rule():
    """Not every member has a Literal `name` (Base's is a str): the first member is used."""

    @dataclass(frozen=True)
    class Loose:
        part: Walker | Base = Walker()

    assert from_dict(Loose, {"part": {"legs": 3}}).part == Walker(legs=3)


# --- every error a user can cause is a sentence naming the file and the field ---

@pytest.mark.parametrize(("data", "path", "shown"), [
    ({"inner": {"rate": float("nan")}}, "inner.rate", "nan"),  # a float field in a section
    ({"pair": [1.0, float("inf")]}, "pair[1]", "inf"),  # a fixed tuple of floats
    ({"maybe": float("-inf")}, "maybe", "-inf"),  # an optional float
    ({"table": {"a": float("nan")}}, "table.a", "nan"),  # a dict of floats
    ({"inner": {"rate": "nan"}}, "inner.rate", "nan"),  # what `--set inner.rate=nan` gives
    ({"inner": {"rate": "inf"}}, "inner.rate", "inf"),
    ({"inner": {"rate": "1e400"}}, "inner.rate", "inf"),  # overflows to infinity
])
def test_non_finite_numbers_are_refused_in_every_float_field(data, path, shown):
    with pytest.raises(ConfigError) as err:
        build(data)
    message = str(err.value)
    assert f"'{path}' must be a finite number, got {shown}" in message, message
    assert SOURCE in message


def test_non_finite_numbers_from_yaml_and_set_are_refused(tmp_path):
    """YAML's `.nan` / `.inf` are floats; `nan` after --set is a string float() reads."""
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  rate: .nan\n")
    with pytest.raises(ConfigError, match=r"c.yaml: 'inner.rate' must be a finite number, got nan"):
        from_dict(Outer, load_yaml(path), source=str(path))
    path.write_text("pair: [0, -.inf]\n")
    with pytest.raises(ConfigError, match=r"'pair\[1\]' must be a finite number, got -inf"):
        from_dict(Outer, load_yaml(path), source=str(path))
    for item in ("inner.rate=nan", "inner.rate=.inf", "maybe=-inf"):
        with pytest.raises(ConfigError, match="must be a finite number"):
            build(apply_overrides({}, [item]))
    assert build(apply_overrides({}, ["inner.rate=1e3"])).inner.rate == 1000.0  # finite: fine


def test_load_yaml_names_a_folder_and_bytes_that_are_not_utf8(tmp_path, monkeypatch):
    folder = tmp_path / "config.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"config.yaml: is a folder, expected a YAML file"):
        load_yaml(folder)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_yaml(latin)
    assert str(err.value) == (f"{latin}: not UTF-8 text (byte 0xe9 at offset 9); save it as "
                              "UTF-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: 1\n  b: [2\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(broken)
    assert str(err.value) == (f"{broken}: not valid YAML at line 2, column 4: mapping values "
                              "are not allowed here")  # one line: where, and what was found
    unreadable = tmp_path / "locked.yaml"
    unreadable.write_text("a: 1\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(unreadable), "read_bytes", denied)
    with pytest.raises(ConfigError, match=r"locked.yaml: cannot be read \(Permission denied\)"):
        load_yaml(unreadable)


@pytest.mark.parametrize("item", ["a.b=[1,", "a.b={x", "a.b=x: y: z"])
def test_apply_overrides_names_a_value_that_is_not_yaml(item):
    with pytest.raises(ConfigError) as err:
        apply_overrides({}, [item])
    assert str(err.value).startswith(f"--set {item}: the value is not valid YAML (")
