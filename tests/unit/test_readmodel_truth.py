"""The owner's payment read shows attempts and the late-payment marks from the snapshot."""

from __future__ import annotations

from connectors.ingress.readmodel import provider_truth_json


def test_attempts_and_late_marks_from_the_stored_snapshot() -> None:
    snapshot = {
        "attempts": [
            {"number": 1, "provider_reference": "pi_1", "method": "pm_card_chargeDeclined", "outcome": "failed",
             "provider_code": "generic_decline", "provider_message": "Your card was declined.",
             "started_at": "2026-12-01T09:00:00Z", "ended_at": "2026-12-01T09:00:02Z", "command_id": "c-1"},
            {"number": 2, "provider_reference": "pi_1", "method": "pm_card_visa", "outcome": "succeeded",
             "provider_code": "succeeded", "provider_message": None,
             "started_at": "2026-12-01T09:01:00Z", "ended_at": "2026-12-01T09:01:01Z", "command_id": "c-2"},
        ],
        "late_from": "expired",
        "late_decision": "keep",
    }
    assert provider_truth_json(snapshot) == {
        "attempts": [
            {"number": 1, "outcome": "failed", "provider_reference": "pi_1", "provider_code": "generic_decline",
             "provider_message": "Your card was declined.", "started_at": "2026-12-01T09:00:00Z",
             "ended_at": "2026-12-01T09:00:02Z"},
            {"number": 2, "outcome": "succeeded", "provider_reference": "pi_1", "provider_code": "succeeded",
             "provider_message": None, "started_at": "2026-12-01T09:01:00Z", "ended_at": "2026-12-01T09:01:01Z"},
        ],
        "late_from": "expired",
        "late_decision": "keep",
    }


def test_the_placeholder_row_has_no_snapshot_yet() -> None:
    assert provider_truth_json(None) == {"attempts": [], "late_from": None, "late_decision": None}
