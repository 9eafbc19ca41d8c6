"""The SMTP stages at which the edge asks the policy, and their events.

A stage is what deadlines and fail modes are configured by.
"""

from __future__ import annotations

from enum import Enum


class Stage(Enum):
    CONNECT = "connect"
    EHLO = "ehlo"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


EVENT_STAGE = {
    "smtp_server_connection_accepted": Stage.CONNECT,
    "smtp_server_ehlo": Stage.EHLO,
    "smtp_server_auth_plain": Stage.AUTH,
    "smtp_server_mail_from": Stage.MAIL,
    "smtp_server_rcpt_to": Stage.RCPT,
    "smtp_server_data": Stage.DATA,
    "smtp_server_message_received": Stage.DATA,
}
