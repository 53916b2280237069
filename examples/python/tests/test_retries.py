def test_error_handling_with_retries(run_example):
    out = run_example("retries.py").stdout
    assert out.splitlines() == [
        "attempt 1 failed (CommandExitException); retrying in 0.2s",
        "attempt 2 failed (CommandExitException); retrying in 0.4s",
        "ok after 3 tries",
        "exit code: 3 stdout: about to fail",
        "attempt 1 failed (TimeoutException); retrying in 0.2s",
        "attempt 2 failed (TimeoutException); retrying in 0.4s",
        "slow but done",
        "attempt 1 failed (CommandExitException); retrying in 0.1s",
        "gave up after 2 attempts",
        "missing file: not found (not retried)",
        "killed sandbox: not found",
        "wrong API key: authentication error",
    ], out
