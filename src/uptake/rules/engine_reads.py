"""The rules engine's reading side: a subject's stored state, snapshot, and forgetting it.

:class:`EngineReads` is a base of :class:`~uptake.rules.engine.RulesEngine`; it only reads
(and deletes) what the engine's updates wrote.
"""

from __future__ import annotations

from ..errors import InvalidEventError
from ..events import check_account, check_identity
from ..stores import Store
from .engagement import EngagementRules, EngagementSnapshot
from .identity import Identity
from .milestones import MilestoneRules
from .plumbing import AccountMemo
from .state import SubjectState

__all__ = ["EngineReads", "subject_keys"]


class EngineReads:
    """Reads of the rule state (a base class of the rules engine)."""

    store: Store
    identity: Identity
    user: MilestoneRules
    account: MilestoneRules
    user_engagement: EngagementRules | None
    account_engagement: EngagementRules | None
    _accounts: AccountMemo | None

    def state(
        self, user_id: object, account_id: object, now: float
    ) -> tuple[str, SubjectState] | None:
        """The stored state of a user (as user or anonymous id) or an account, with its key."""
        for key in subject_keys(user_id, account_id):
            key, state = self.identity.resolve(key, self.store.get(key))
            if state is not None:
                return key, state
        return None

    def missed(self, key: str, state: SubjectState, now: float) -> list[str]:
        rules = self.account if key.startswith("account:") else self.user
        return rules.missed_by(state, now)

    def snapshot(self, user_id: object, account_id: object, now: float) -> EngagementSnapshot:
        """The engagement snapshot of a user or account at event time ``now``."""
        found = self.state(user_id, account_id, now)
        key, state = found if found is not None else (subject_keys(user_id, account_id)[0], None)
        rules = self.account_engagement if key.startswith("account:") else self.user_engagement
        assert rules is not None  # the client checks engagement is on
        return rules.snapshot(
            state,
            now,
            subject=key.split(":", 1)[1],
            reached=state.reached if state is not None else {},
            missed=self.missed(key, state, now) if state is not None else (),
        )

    def forget(self, user_id: object, account_id: object) -> bool:
        known = False
        for key in subject_keys(user_id, account_id):
            if key.startswith("account:") and self._accounts is not None:
                self._accounts.forget(key[len("account:") :])
            known = self.store.delete(key) or known
        return known


def subject_keys(user_id: object, account_id: object) -> list[str]:
    """The store keys a user id (as user or anonymous id) or an account id may have."""
    if (user_id is None) == (account_id is None):
        raise InvalidEventError("give either a user_id or an account_id")
    if account_id is not None:
        return [f"account:{check_account(account_id)}"]
    uid = check_identity(user_id, None)[0]
    return [f"user:{uid}", f"anon:{uid}"]
