#!/usr/bin/env python3
"""A tiny SMTP backend for trying postern: prints every message it receives.

Standard library only. Usage: backend.py [PORT] [NAME] [USER PASSWORD]
(default 2626 "example", no credentials). With USER and PASSWORD it offers
AUTH PLAIN and answers it as a mail server does: 235 for those credentials,
535 otherwise (postern replays the AUTH of a client it authenticated).
"""
import base64
import socketserver
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 2626
NAME = sys.argv[2] if len(sys.argv) > 2 else "example"
CREDENTIALS = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else None


def plain_login(token):
    """(user, password) of an AUTH PLAIN token, or None."""
    try:
        parts = base64.b64decode(token, validate=True).split(b"\0")
    except ValueError:
        return None
    if len(parts) != 3:
        return None
    return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")


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
                if CREDENTIALS:
                    self.say("250-AUTH PLAIN")
                self.say("250 8BITMIME")
            elif verb == "HELO":
                self.say(f"250 {NAME}.backend")
            elif verb == "IPADDR":
                print(f"[{NAME}] client identity: {text}", flush=True)
                self.say("250 2.0.0 Ok")
            elif verb == "AUTH":
                words = text.split()
                if len(words) == 2 and words[1].upper() == "PLAIN":
                    self.say("334 ")
                    words.append(self.rfile.readline().decode("ascii", "replace").strip())
                login = plain_login(words[2]) if len(words) == 3 and words[1].upper() == "PLAIN" else None
                if CREDENTIALS and login == CREDENTIALS:
                    print(f"[{NAME}] authenticated as {login[0]}", flush=True)
                    self.say("235 2.7.0 Authentication successful")
                elif CREDENTIALS:
                    self.say("535 5.7.8 Authentication credentials invalid")
                else:
                    self.say("502 5.5.1 AUTH not offered")
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
