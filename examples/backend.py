#!/usr/bin/env python3
"""A tiny SMTP backend for trying postern: prints every message it receives.

Standard library only. Usage: backend.py [PORT] [NAME] (default 2626 "example").
"""
import socketserver
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 2626
NAME = sys.argv[2] if len(sys.argv) > 2 else "example"


class Session(socketserver.StreamRequestHandler):
    def say(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.say(f"220 {NAME}.backend ESMTP example backend")
        envelope = []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.say(f"250-{NAME}.backend")
                self.say("250 8BITMIME")
            elif verb == "HELO":
                self.say(f"250 {NAME}.backend")
            elif verb == "IPADDR":
                print(f"[{NAME}] client identity: {text}", flush=True)
                self.say("250 2.0.0 Ok")
            elif verb in ("MAIL", "RCPT"):
                envelope.append(text)
                self.say("250 2.1.0 Ok")
            elif verb == "DATA":
                self.say("354 End data with <CR><LF>.<CR><LF>")
                body = []
                while True:
                    l = self.rfile.readline()
                    if not l or l == b".\r\n":
                        break
                    body.append(l.decode("utf-8", "replace"))
                print(f"[{NAME}] message received:", *envelope, sep="\n  ", flush=True)
                print("".join(body), flush=True)
                envelope = []
                self.say("250 2.0.0 Ok: queued")
            elif verb == "RSET":
                envelope = []
                self.say("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.say("221 2.0.0 Bye")
                return
            else:
                self.say("250 2.0.0 Ok")


socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("127.0.0.1", PORT), Session) as server:
    print(f"[{NAME}] example backend listening on 127.0.0.1:{PORT}", flush=True)
    server.serve_forever()
