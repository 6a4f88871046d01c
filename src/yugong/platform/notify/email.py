"""E-mail delivery over SMTP (``aiosmtplib``): a plain-text and a simple HTML part, the
subject in Chinese and English. Connection trouble and 4xx replies are retried; 5xx replies
(e.g. an unknown recipient) are final."""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from yugong.platform.notify.delivery import Attempt
from yugong.platform.notify.targets import ResolvedTarget


@dataclass(frozen=True, slots=True)
class Mail:
    subject_zh: str
    subject_en: str
    lines: list[tuple[str, str]]  # (label, value) rows of the body
    intro: str = ""

    @property
    def subject(self) -> str:
        return f"{self.subject_zh} / {self.subject_en}"


def compose(target: ResolvedTarget, to: list[str], mail: Mail) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = mail.subject
    msg["From"] = target.config["from"]
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=target.config["from"].rsplit("@", 1)[-1])
    text = [mail.intro, ""] if mail.intro else []
    text += [f"{label}: {value}" for label, value in mail.lines]
    msg.set_content("\n".join(text) + "\n")
    rows = "".join(
        f"<tr><th align=left>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in mail.lines
    )
    msg.add_alternative(
        "<html><body>"
        f"<h2>{html.escape(mail.subject)}</h2>"
        + (f"<p>{html.escape(mail.intro)}</p>" if mail.intro else "")
        + f"<table>{rows}</table></body></html>",
        subtype="html",
    )
    return msg


async def send(target: ResolvedTarget, to: list[str], mail: Mail) -> Attempt:
    """One try; SMTP and network trouble become Attempts, never exceptions."""
    cfg = target.config
    if not to:
        return Attempt(ok=False, error="no recipients")
    security = cfg.get("security", "starttls")
    try:
        await aiosmtplib.send(
            compose(target, to, mail),
            hostname=cfg["host"],
            port=int(cfg["port"]),
            username=cfg.get("username"),
            password=target.secret if cfg.get("username") else None,
            use_tls=security == "ssl",
            start_tls=security == "starttls",
            timeout=float(cfg.get("timeout_s", 10.0)),
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        words = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return Attempt(
            ok=False,
            status=max(codes, default=None),
            error=f"recipients refused: {words}",
            retry=bool(codes) and max(codes) < 500,
        )
    except aiosmtplib.SMTPResponseException as exc:
        return Attempt(
            ok=False, status=exc.code, error=f"SMTP {exc.code}: {exc.message}", retry=exc.code < 500
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}", retry=True)
    except ValueError as exc:  # a host name or address that cannot be encoded: final
        return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")
    return Attempt(ok=True, status=250)


__all__ = ["Mail", "compose", "send"]
