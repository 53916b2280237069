def test_async_parallel(run_example):
    out = run_example("async_parallel.py").stdout
    lines = out.splitlines()
    streamed = sorted(l for l in lines if l.startswith("streamed:"))
    assert streamed == sorted(f"streamed: job {n} step {i}" for n in range(1, 4) for i in range(2)), out
    assert [l for l in lines if not l.startswith("streamed:")] == [
        "job 1: 1^2 = 1, file says 1, shell says 42",
        "job 2: 2^2 = 4, file says 4, shell says 42",
        "job 3: 3^2 = 9, file says 9, shell says 42",
        "running after all jobs: 0",
    ], out
