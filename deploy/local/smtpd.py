"""A real SMTP server process for local runs and tests: STARTTLS required, optional AUTH,
every accepted message stored as an .eml file (with the TLS version it arrived under).

    python deploy/local/smtpd.py --port 10025 --cert c.pem --key k.pem --maildir DIR [--no-tls] [--max-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.maildir.mkdir(parents=True, exist_ok=True)
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        tls = session.ssl.get("cipher", ("none", "none"))[1] if session.ssl else "none"
        name = f"{time.time_ns()}-{self.count}.eml"
        head = (
            f"X-Local-Smtpd-Tls: {tls}\r\n"
            f"X-Local-Smtpd-Rcpt: {','.join(envelope.rcpt_tos)}\r\n"
            f"X-Local-Smtpd-Auth: {session.authenticated}\r\n"
        ).encode()
        tmp = self.maildir / (name + ".tmp")
        tmp.write_bytes(head + envelope.original_content)
        tmp.rename(self.maildir / name)
        return "250 Message accepted for delivery"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=10025)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--no-tls", action="store_true", help="plaintext only (to test refusal)")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument(
        "--max-size",
        type=int,
        default=35_000_000,
        help="largest message accepted, in bytes (NHSmail: 35 MB); advertised as SIZE, 552 above it",
    )
    args = ap.parse_args()

    kwargs: dict = {}
    if not args.no_tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if args.user:

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == (
                args.user,
                args.password,
            )
            return AuthResult(success=ok, handled=False)  # let aiosmtpd send 235 or 535

        kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=not args.no_tls)
    controller = Controller(
        Store(Path(args.maildir)), hostname=args.host, port=args.port, data_size_limit=args.max_size, **kwargs
    )
    controller.start()
    print(f"smtpd listening on {args.host}:{args.port} tls={'off' if args.no_tls else 'starttls-required'}", flush=True)

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
