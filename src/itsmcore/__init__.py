"""itsmcore: IT service management as a small, exact, typed library."""

from itsmcore.calendar import BusinessCalendar
from itsmcore.change import Change, ChangeState, ChangeType, RiskLevel
from itsmcore.clock import Clock, ManualClock, SystemClock
from itsmcore.errors import (
    ClosedError,
    ConcurrencyError,
    CorruptionError,
    DefinitionError,
    DuplicateIdError,
    FormError,
    InvalidTransitionError,
    ItsmError,
    NotFoundError,
    SegregationOfDutiesError,
    StoreBusyError,
    TransientError,
    ValidationError,
)
from itsmcore.events import Event
from itsmcore.incident import (
    Channel,
    HoldReason,
    Incident,
    IncidentState,
    ResolutionCode,
)
from itsmcore.knowledge import ArticleState, KnowledgeArticle
from itsmcore.priority import Impact, Level, Priority, PriorityMatrix, Urgency
from itsmcore.problem import KnownError, Problem, ProblemState
from itsmcore.request import CatalogItem, RequestState, ServiceRequest
from itsmcore.service import BusinessService, ConfigurationItem, Relationship, ServiceModel
from itsmcore.sla import SLADefinition, SLAStage, SLAStatus
from itsmcore.workflow import Transition, Workflow

__all__ = [
    "ArticleState",
    "BusinessCalendar",
    "BusinessService",
    "CatalogItem",
    "Change",
    "ChangeState",
    "ChangeType",
    "Channel",
    "Clock",
    "ClosedError",
    "ConcurrencyError",
    "ConfigurationItem",
    "CorruptionError",
    "DefinitionError",
    "DuplicateIdError",
    "Event",
    "FormError",
    "HoldReason",
    "Impact",
    "Incident",
    "IncidentState",
    "InvalidTransitionError",
    "ItsmError",
    "KnowledgeArticle",
    "KnownError",
    "Level",
    "ManualClock",
    "NotFoundError",
    "Priority",
    "PriorityMatrix",
    "Problem",
    "ProblemState",
    "Relationship",
    "RequestState",
    "ResolutionCode",
    "RiskLevel",
    "SLADefinition",
    "SLAStage",
    "SLAStatus",
    "SegregationOfDutiesError",
    "ServiceModel",
    "ServiceRequest",
    "StoreBusyError",
    "SystemClock",
    "TransientError",
    "Transition",
    "Urgency",
    "ValidationError",
    "Workflow",
]
