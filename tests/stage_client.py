"""`python -m slimnet ARGS`, run by the tests' stage server when one is set (tests/stage_server.py).

The tiny project's stages run this instead of `python -m slimnet`. With SLIMNET_STAGE_SERVER
naming a server's socket, it sends the server its arguments, directory, environment and standard
streams and exits with the stage's exit code; without one, it becomes `python -m slimnet ARGS`.
Only the standard library: the point is a start without torch's import.
"""

import json
import os
import socket
import struct
import sys


def main() -> None:
    path = os.environ.get("SLIMNET_STAGE_SERVER")
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if not path:
            raise FileNotFoundError
        client.connect(path)
    except OSError:
        os.execv(sys.executable, [sys.executable, "-m", "slimnet", *sys.argv[1:]])
    request = json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    message = struct.pack("!I", len(request)) + request
    socket.send_fds(client, [message[:4096]], [0, 1, 2])
    client.sendall(message[4096:])
    reply = b""
    while len(reply) < 4:
        chunk = client.recv(4 - len(reply))
        if not chunk:
            sys.exit("the stage server went away before the stage ended")
        reply += chunk
    sys.exit(struct.unpack("!i", reply)[0])


if __name__ == "__main__":
    main()
