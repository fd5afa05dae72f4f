"""The decision trail: every decision, durable before the message goes upstream."""

from gateway.audit.base import AuditTrail, DecisionQuery
from gateway.audit.memory import MemoryTrail
from gateway.audit.sqlite import SqliteTrail

__all__ = ["AuditTrail", "DecisionQuery", "MemoryTrail", "SqliteTrail"]
