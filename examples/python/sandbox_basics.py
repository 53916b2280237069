"""The general sandbox: files, commands and streaming output.

    python examples/python/sandbox_basics.py
"""

from e2b import Sandbox

sandbox = Sandbox.create()
try:
    # Files: write, read, list, and make directories.
    sandbox.files.make_dir("/home/user/project")
    sandbox.files.write("/home/user/project/greeting.txt", "hello from a file\n")
    sandbox.files.write_files([
        {"path": "/home/user/project/data.csv", "data": "name,score\nada,3\nbob,5\n"},
        {"path": "/home/user/project/script.py", "data": "print(sum(range(10)))\n"},
    ])
    print("read:", sandbox.files.read("/home/user/project/greeting.txt"), end="")
    names = sorted(entry.name for entry in sandbox.files.list("/home/user/project"))
    print("listed:", ", ".join(names))
    print("exists:", sandbox.files.exists("/home/user/project/data.csv"))

    # Commands: run one and read its result.
    result = sandbox.commands.run("python3 /home/user/project/script.py")
    print("script printed:", result.stdout.strip(), "exit code:", result.exit_code)
    result = sandbox.commands.run("wc -l < data.csv", cwd="/home/user/project")
    print("lines in data.csv:", result.stdout.strip())
    result = sandbox.commands.run("echo $GREETING", envs={"GREETING": "hi from envs"})
    print("env:", result.stdout.strip())

    # Streaming: each line arrives as the command prints it.
    sandbox.commands.run(
        "for i in 1 2 3; do echo step $i; sleep 0.2; done; echo oops >&2",
        on_stdout=lambda line: print("stdout>", line.rstrip()),
        on_stderr=lambda line: print("stderr>", line.rstrip()),
    )

    # A background command: start it, talk to it, wait for it.
    handle = sandbox.commands.run("read name; echo hello $name", background=True, stdin=True)
    sandbox.commands.send_stdin(handle.pid, "sandpit\n")
    print("background:", handle.wait().stdout.strip())

    # A long-running background command: read its output as it comes,
    # see it among the sandbox's processes, then kill it.
    command = sandbox.commands.run("echo hello; sleep 10; echo world", background=True)
    for stdout, stderr, _ in command:
        if stdout:
            print("background stdout>", stdout.rstrip())
            break
    print("listed:", any(p.pid == command.pid for p in sandbox.commands.list()))
    print("killed:", command.kill())

    # A file written by a command is there for the files API, and back.
    sandbox.commands.run("date -u +%Y > /home/user/project/year.txt")
    print("year file has", len(sandbox.files.read("/home/user/project/year.txt").strip()), "digits")
finally:
    sandbox.kill()
print("killed")
