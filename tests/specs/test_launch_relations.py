"""Spec inference that follows the launching function as it runs: which arm of
an ``if`` binds a value, a default that means "not given", and the relations
between the values one launch computes from inputs nothing here knows."""

from __future__ import annotations

from pathlib import Path

from tritriage.discover.inventory import discover
from tritriage.specs.infer import infer_specs
from tritriage.specs.resolve import validate
from testkit import write_source  # noqa: E402 - shared test helpers


def _specs(root: Path, name: str):
    inv = discover(root)
    kernel = next(k for k in inv.kernels if k.qualname == name)
    return kernel, infer_specs(kernel, inv, root)


def _frontend_accepts(root: Path, kernel, specs) -> None:
    verdicts = validate([(kernel, s) for s in specs], root, jobs=1)
    assert [v.frontend for v in verdicts] == [True] * len(specs), [v.reason for v in verdicts]


ROPE_LIKE = '''
    import triton
    import triton.language as tl

    @triton.jit
    def k(x_ptr, n, D: tl.constexpr, PAD_D: tl.constexpr, BLOCK_H: tl.constexpr, NEOX: tl.constexpr):
        heads = tl.arange(0, BLOCK_H)
        offs = tl.arange(0, PAD_D // 2)
        ptrs = x_ptr + heads[:, None] * D + offs[None, :]
        mask = (heads[:, None] < n) & (offs[None, :] < D // 2)
        x = tl.load(ptrs, mask=mask, other=0.0)
        if NEOX:
            x = x * 2.0
        tl.store(ptrs, x, mask=mask)

    def launch(x, cos, sin, cache=None, dim: int = -1, neox: bool = True):
        n = x.shape[1]
        if neox:
            BLOCK_H = 64
        else:
            BLOCK_H = 32
        if cache is not None:
            # the caller gives dim here: -1 would make PAD_D 1
            pad = triton.next_power_of_2(dim)
            k[(1,)](x, n, dim, pad, BLOCK_H=BLOCK_H, NEOX=neox)
        else:
            if dim == -1:
                dim = cos.shape[-1] * 2
            pad = triton.next_power_of_2(dim)
            k[(1,)](x, n, dim, pad, BLOCK_H=BLOCK_H, NEOX=neox)
'''


def test_a_value_bound_in_both_arms_of_an_if_follows_the_test(tmp_path):
    write_source(tmp_path, "m.py", ROPE_LIKE)
    kernel, specs = _specs(tmp_path, "k")
    by_flag = {s.constexprs["NEOX"]: s for s in specs}
    assert set(by_flag) == {True, False}
    # The arm each answer takes, not the one written last.
    assert by_flag[True].constexprs["BLOCK_H"] == 64
    assert by_flag[False].constexprs["BLOCK_H"] == 32
    assert "neox=False" not in by_flag[True].rules["BLOCK_H"]
    assert "launch(neox=False)" in by_flag[False].rules["BLOCK_H"]


def test_a_not_given_default_is_no_launch_value(tmp_path):
    write_source(tmp_path, "m.py", ROPE_LIKE)
    kernel, specs = _specs(tmp_path, "k")
    for s in specs:
        d, pad = s.constexprs["D"], s.constexprs["PAD_D"]
        assert d != -1 and d > 1, s.rules["D"]
        # Computed from the launch's own D, as the caller computes it.
        assert pad >= d and pad & (pad - 1) == 0 and pad < 2 * d, (d, pad, s.rules["PAD_D"])
        assert f"dim={d}" in s.rules["PAD_D"], s.rules["PAD_D"]
    _frontend_accepts(tmp_path, kernel, specs)


def test_values_computed_from_unknown_inputs_keep_their_relations(tmp_path):
    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(x_ptr, y_ptr, HIDDEN: tl.constexpr, HEAD: tl.constexpr, N_HEADS: tl.constexpr,
              ROWS: tl.constexpr, ROW_HEADS: tl.constexpr, HALF: tl.constexpr):
            r = tl.arange(0, ROWS)
            c = tl.arange(0, HIDDEN)
            x = tl.load(x_ptr + r[:, None] * HIDDEN + c[None, :]).to(tl.float32)
            per_head = x.reshape(ROW_HEADS, HEAD)
            s = tl.sum(per_head * per_head, axis=1)
            o = tl.arange(0, ROW_HEADS)
            tl.store(y_ptr + o, s)
            h = tl.arange(0, N_HEADS)
            tl.store(y_ptr + ROW_HEADS + h, h.to(tl.float32))
            q = tl.arange(0, HALF)
            tl.store(y_ptr + ROW_HEADS + N_HEADS + q, q.to(tl.float32))

        def launch(x, y, hidden_size: int, head_dim: int, rot: int):
            n_heads = hidden_size // head_dim
            rows = int(65536 / x.element_size()) // hidden_size
            rows = max(1, rows)
            k[(1,)](x, y, hidden_size, head_dim, n_heads, int(rows), rows * n_heads, head_dim // 2)
    ''')
    kernel, specs = _specs(tmp_path, "k")
    s = specs[0]
    c = s.constexprs
    assert c["N_HEADS"] * c["HEAD"] == c["HIDDEN"], c
    assert c["ROW_HEADS"] * c["HEAD"] == c["ROWS"] * c["HIDDEN"], c
    assert c["HALF"] * 2 == c["HEAD"], c
    # The rule says which inputs the computed value was taken from.
    assert "hidden_size=" in s.rules["N_HEADS"] and "head_dim=" in s.rules["N_HEADS"]
    _frontend_accepts(tmp_path, kernel, specs[:1])


def test_bitwise_operands_and_argmax_results_are_integers(tmp_path):
    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(a_ptr, b_ptr, m_ptr, idx_ptr, s_ptr, t_ptr, out_ptr, n, BLOCK: tl.constexpr):
            offs = tl.arange(0, BLOCK)
            mask = offs < n
            a = tl.load(a_ptr + offs, mask=mask)
            b = tl.load(b_ptr + offs, mask=mask)
            hit = (a | b).to(tl.int1)
            m = tl.load(m_ptr + offs, mask=mask, other=float("-inf"))
            best = tl.argmax(m, axis=0)
            j = tl.load(idx_ptr + best)
            ok = tl.max(tl.load(s_ptr + offs, mask=mask), axis=0) > tl.max(tl.load(t_ptr + offs, mask=mask), axis=0)
            if ok:
                tl.store(out_ptr + offs, tl.where(hit, j, 0), mask=mask)

        def launch(a, b, m, idx, s, t, out):
            k[(1,)](a, b, m, idx, s, t, out, a.numel(), BLOCK=128)
    ''')
    kernel, specs = _specs(tmp_path, "k")
    sig = specs[0].signature
    # Triton's bitwise operators take integers only.
    assert sig["a_ptr"].startswith(("*i", "*u")) and sig["b_ptr"].startswith(("*i", "*u")), sig
    assert "bitwise" in specs[0].rules["a_ptr"]
    # argmax gives an index into m: m's data stays float, the index addresses idx.
    assert sig["m_ptr"].startswith("*fp") and sig["idx_ptr"].startswith(("*i", "*u")), sig
    # A comparison's result is a bool, not the data compared.
    assert not sig["s_ptr"].startswith(("*i", "*u")) and not sig["t_ptr"].startswith(("*i", "*u")), sig
    _frontend_accepts(tmp_path, kernel, specs[:1])


def test_data_inserted_into_a_tensor_of_an_explicit_dtype_has_that_dtype(tmp_path):
    # triton-ascend's insert_slice takes a slice of the destination's element
    # type: a bf16 buffer filled from a pointer makes that pointer bf16.
    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(pos_ptr, cache_ptr, out_ptr, ROWS: tl.constexpr, DIM: tl.constexpr):
            pos = tl.load(pos_ptr + tl.arange(0, ROWS))
            buf = tl.zeros((ROWS, DIM), dtype=tl.bfloat16)
            for i in tl.range(ROWS):
                buf = tl.insert_slice(buf, tl.load(cache_ptr + i * DIM + tl.arange(0, DIM)[None, :]).reshape(1, DIM),
                                   offsets=(i, 0), sizes=(1, DIM), strides=(1, 1))
            r = tl.arange(0, ROWS)
            c = tl.arange(0, DIM)
            tl.store(out_ptr + r[:, None] * DIM + c[None, :], buf)

        def launch(pos, cache, out):
            k[(1,)](pos, cache, out, ROWS=8, DIM=64)
    ''')
    kernel, specs = _specs(tmp_path, "k")
    assert specs[0].signature["cache_ptr"] == "*bf16", specs[0].rules["cache_ptr"]
    assert "insert_slice" in specs[0].rules["cache_ptr"]
    _frontend_accepts(tmp_path, kernel, specs[:1])


def test_inference_gives_the_same_spec_in_every_process(tmp_path):
    # A pointer that receives data from both an integer and a float pointer:
    # which one it follows must not depend on this process's string hashing.
    import json
    import os
    import subprocess
    import sys

    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(idx_ptr, w_ptr, t_ptr, e_ptr, out_ptr, n, BLOCK: tl.constexpr):
            offs = tl.arange(0, BLOCK)
            i = tl.load(idx_ptr + offs)
            w = tl.load(w_ptr + offs)
            t = tl.load(t_ptr + i)
            tl.store(e_ptr + offs, tl.exp(w) + t)
            tl.store(out_ptr + offs, tl.where(i > 0, i, w), mask=offs < n)

        def launch(idx, w, t, e, out):
            k[(1,)](idx, w, t, e, out, idx.numel(), BLOCK=64)
    ''')
    code = ("import json, sys; from pathlib import Path; from tritriage.discover.inventory import discover;"
            "from tritriage.specs.infer import infer_specs; r = Path(sys.argv[1]); inv = discover(r);"
            "print(json.dumps([s.signature for k in inv.kernels for s in infer_specs(k, inv, r)]))")
    seen = set()
    for seed in range(6):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
        seen.add(json.dumps(json.loads(out), sort_keys=True))
    assert len(seen) == 1, seen


GQA_LIKE = '''
    import triton
    import triton.language as tl

    @triton.jit
    def gqa(q_ptr, o_ptr, H: tl.constexpr, HQ: tl.constexpr, G: tl.constexpr, BK: tl.constexpr):
        i_h = tl.program_id(0)
        rows = tl.arange(0, G)
        cols = tl.arange(0, BK)
        x = tl.load(q_ptr + (i_h * G + rows)[:, None] * BK + cols[None, :])
        tl.store(o_ptr + (i_h * G + rows)[:, None] * BK + cols[None, :], x)

    def launch(q, k, o):
        HQ = q.shape[2]
        H = k.shape[2]
        G = HQ // H
        gqa[(H,)](q, o, H=H, HQ=HQ, G=G, BK=64)
'''


def test_a_size_computed_as_zero_from_guessed_inputs_is_not_taken(tmp_path):
    # HQ and H are tensor shapes nothing here knows: guessed from the kernel's
    # own constexprs they may give G = HQ // H = 0, which no launch passes (a
    # zero-length arange); G keeps a value of its own, and the frontend accepts it.
    write_source(tmp_path, "pkg/gqa.py", GQA_LIKE)
    kernel, specs = _specs(tmp_path, "gqa")
    assert specs and all(s.constexprs["G"] > 0 for s in specs), [(s.constexprs, s.rules.get("G")) for s in specs]
    _frontend_accepts(tmp_path, kernel, specs[:1])
