"""The scan-vs-unrolled compile bench measures what it says (tiny shapes, not the bench run)."""

from bench import scan_compile


def test_unrolled_program_grows_with_depth_and_the_scanned_one_does_not():
  shape = dict(d_model=32, seq=8, batch=1)
  r = {(n, s): scan_compile.measure(n, s, **shape) for n in (2, 6) for s in (True, False)}
  assert all(v["compile_s"] > 0 and v["lower_s"] > 0 for v in r.values())
  assert r[(6, False)]["hlo_lines"] > 2 * r[(2, False)]["hlo_lines"]
  assert r[(6, True)]["hlo_lines"] < 1.2 * r[(2, True)]["hlo_lines"]
  assert r[(6, True)]["hlo_lines"] < r[(6, False)]["hlo_lines"]
