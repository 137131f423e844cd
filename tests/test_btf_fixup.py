"""btf/fixup.py's sanitising (the substitutions libbpf makes for BTF kinds a kernel
lacks) and btf/load.py's feature probes: each substitution by hand, and what it gives
loaded into the running kernel; the probes against this kernel, which has every kind."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bpfload.btf import fixup, load
from bpfload.btf import format as btf_format
from bpfload.btf import types as btf_types
from bpfload.btf.encode import encode
from bpfload.btf.spec import Spec

GLOBAL = btf_format.LINKAGE_GLOBAL
KIND_NOTE = "BTF {} replaced by {} (the kernel lacks it)"


def every_kind() -> list[btf_types.Type]:
    """One type of each kind some kernel lacks; ids from 1, in this order."""
    t = btf_types
    return [
        t.Int("int", 4, btf_format.INT_SIGNED),  # 1
        t.Var("x", 1, GLOBAL),  # 2
        t.Datasec(".data", 4, [t.VarSecinfo(2, 0, 4)]),  # 3
        t.FuncProto("", 1, [t.Param("a", 1)]),  # 4
        t.Func("f", 4, GLOBAL),  # 5
        t.Float("float", 4),  # 6
        t.TypeTag("user", 1),  # 7
        t.Ptr("", 7),  # 8
        t.Enum64("big", 8, [t.EnumValue("v", 1 << 40)]),  # 9
        t.Enum("neg", 4, [t.EnumValue("m", -1)], signed=True),  # 10
        t.DeclTag("tag", 2, -1),  # 11
        t.Var("y", 1, GLOBAL),  # 12
        t.Datasec("?.data.opt", 4, [t.VarSecinfo(12, 0, 4)]),  # 13
    ]


ALSO_LACKED = {"datasec": ("decl_tag",)}


def sanitised(**lacks) -> tuple[list[btf_types.Type], list[str]]:
    for feature in list(lacks):
        lacks.update(dict.fromkeys(ALSO_LACKED.get(feature, ()), True))
    obj = SimpleNamespace(btf=Spec(encode(every_kind())), section_sizes={},
                          data_symbols={"x": (0, False), "y": (0, False)}, functions={},
                          externs={})
    features = fixup.Features(**{k: False for k in lacks})
    assert sorted(features.missing()) == sorted(k.rstrip("_") for k in lacks)
    return fixup.program_types(obj, features)


def var_as_int(name: str) -> btf_types.Int:
    return btf_types.Int(name, 1, 0, 0, 8)


# what each missing feature turns into: {type id: replacement}, the notes. A kernel
# without DATASEC (before 5.2) has no DECL_TAG (5.16) either, and a DECL_TAG on a VAR
# turned INT would not load: that case lacks both.
CASES = {
    "datasec": ({2: var_as_int("x"), 12: var_as_int("y"), 11: var_as_int("tag"),
                 3: btf_types.Struct("_data", 4, [btf_types.Member("", 2, 0)]),
                 13: btf_types.Struct("__data_opt", 4, [btf_types.Member("", 12, 0)])},
                [KIND_NOTE.format("DATASEC", "STRUCT"), KIND_NOTE.format("DECL_TAG", "INT"),
                 KIND_NOTE.format("VAR", "INT")]),
    "qmark_datasec": ({13: btf_types.Datasec("_.data.opt", 4, [btf_types.VarSecinfo(12, 0, 4)])},
                      []),
    "func": ({4: btf_types.Enum("", 4, [btf_types.EnumValue("a", 0)]),
              5: btf_types.Typedef("f", 4)},
             [KIND_NOTE.format("FUNC", "TYPEDEF"), KIND_NOTE.format("FUNC_PROTO", "ENUM")]),
    "global_func": ({5: btf_types.Func("f", 4, btf_format.LINKAGE_STATIC)}, []),
    "float_": ({6: btf_types.Struct("", 4, [])}, [KIND_NOTE.format("FLOAT", "STRUCT")]),
    "type_tag": ({7: btf_types.Const("", 1)}, [KIND_NOTE.format("TYPE_TAG", "CONST")]),
    "enum64": ({9: btf_types.Union("big", 8, [btf_types.Member("v", 14, 0)]),
                10: btf_types.Enum("neg", 4, [btf_types.EnumValue("m", -1)], signed=False),
                14: btf_types.Int("enum64_placeholder", 1, 0)},
               [KIND_NOTE.format("ENUM64", "UNION")]),
    "decl_tag": ({11: var_as_int("tag")}, [KIND_NOTE.format("DECL_TAG", "INT")]),
}


def test_a_kernel_with_every_kind_gets_the_types_unchanged():
    types, notes = sanitised()
    assert (types, notes) == (every_kind(), [])


@pytest.mark.parametrize("lacks", list(CASES))
def test_each_missing_kind_is_replaced_and_nothing_else(lacks):
    replaced, notes = CASES[lacks]
    types, got_notes = sanitised(**{lacks: True})
    expected = {i: t for i, t in enumerate(every_kind(), 1)}
    expected.update(replaced)
    assert dict(enumerate(types, 1)) == expected  # every id kept, only these changed
    assert got_notes == notes


@pytest.mark.parametrize("lacks", list(CASES))
def test_what_the_substitutions_give_still_loads(root, no_leaks, lacks):
    """The replacements are kinds every BTF-capable kernel takes: this one must too."""
    types, _ = sanitised(**{lacks: True})
    load.load_btf(encode(types), "sanitised BTF").close()


def test_all_substitutions_at_once_still_load(root, no_leaks):
    types, notes = sanitised(**dict.fromkeys(CASES, True))
    assert not any(isinstance(t, (btf_types.Var, btf_types.Datasec, btf_types.Func,
                                  btf_types.FuncProto, btf_types.Float, btf_types.TypeTag,
                                  btf_types.Enum64, btf_types.DeclTag)) for t in types)
    load.load_btf(encode(types), "sanitised BTF").close()


def test_probes_find_every_kind_in_this_kernel(root, no_leaks):
    """The running kernel (6.x) has every kind the probes ask about: a probe whose tiny
    BTF is wrong would report a kind missing and make the loader sanitise for nothing."""
    load.probe_features.cache_clear()
    try:
        assert load.probe_features().missing() == []
    finally:
        load.probe_features.cache_clear()


def test_a_probe_reports_what_the_kernel_refuses(root, no_leaks):
    i32 = btf_types.Int("int", 4, btf_format.INT_SIGNED)
    assert load._accepts([i32])
    # a DATASEC naming a type that does not exist, a FUNC whose type is no prototype
    assert not load._accepts([i32, btf_types.Datasec(".data", 4, [btf_types.VarSecinfo(9, 0, 4)])])
    assert not load._accepts([i32, btf_types.Func("f", 1, GLOBAL)])
