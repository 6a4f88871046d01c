"""Notifications: targets (webhooks, e-mail senders) and their delivery with retries."""

from yugong.platform.notify.delivery import Attempt, Backoff, Deliveries, DeliveryLog
from yugong.platform.notify.service import NotifyService
from yugong.platform.notify.targets import NotificationTargets, ResolvedTarget

__all__ = [
    "Attempt",
    "Backoff",
    "Deliveries",
    "DeliveryLog",
    "NotificationTargets",
    "NotifyService",
    "ResolvedTarget",
]
