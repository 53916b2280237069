def test_timeouts_and_cleanup(run_example):
    out = run_example("timeouts.py").stdout
    assert out.splitlines() == [
        "short-lived sandbox running: True",
        "after its timeout, running: False",
        "connect after timeout: not found",
        "set_timeout moved the end by about 9 minutes",
        "command timed out",
        "the sandbox still answers: yes",
        "killed; running: False",
        "code timed out",
        "the kernel still answers: 42",
        "forgotten sandboxes found: 2",
        "after killing them: 0",
        "still running after cleanup: []",
    ], out
