"""Settings fail loudly at start-up, naming the variable."""

import pytest

from rtc_recording.cli import main


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"RTCREC_DEFAULT_REGION": "mars"}, "RTCREC_DEFAULT_REGION"),
        ({"RTCREC_QUOTA_PER_SECOND": "0"}, "RTCREC_QUOTA_PER_SECOND"),
        ({"RTCREC_CALLBACK_URL": "https://cb.example.com"}, "RTCREC_CALLBACK_AUTH_KEY is required"),
        (
            {"RTCREC_CALLBACK_URL": "https://cb.example.com", "RTCREC_CALLBACK_AUTH_KEY": "short"},
            "RTCREC_CALLBACK_AUTH_KEY: Value error, must be 16 to 64 letters and digits",
        ),
    ],
)
def test_bad_settings_stop_the_operator_with_a_clear_message(monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        main(["run"])
    assert "invalid operator settings" in str(exit_.value) and expected in str(exit_.value)
    assert "RTCREC_:" not in str(exit_.value)
