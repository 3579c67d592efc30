"""``[attribution]`` and ``[[budgets]]``: read into the config, with errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.config import AttributionConfig, Budget, Config, load_config
from costmeter.core.errors import ConfigError
from costmeter.core.owner import Owner
from costmeter.cost.chargeback import AttributionRule, project_of

FULL = """
[attribution]
share_idle = true

[[attribution.rules]]
project = "vision"
users = ["alice", "bob"]
accounts = ["cv-lab"]

[[attribution.rules]]
project = "nlp"
namespaces = ["nlp-*"]

[[budgets]]
by = "project"
key = "vision"
daily = 50.0
monthly = 1000

[[budgets]]
by = "tag:team"
key = "infra"
monthly = 20
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def error_for(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert str(tmp_path / "config.toml") in str(info.value)
    return info.value


def test_defaults_share_no_idle_and_have_no_rules_or_budgets(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.attribution == AttributionConfig(share_idle=False, rules=())
    assert config.budgets == ()


def test_a_full_file_is_read(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    assert config.attribution.share_idle is True
    assert config.attribution.rules == (
        AttributionRule("vision", users=("alice", "bob"), accounts=("cv-lab",)),
        AttributionRule("nlp", namespaces=("nlp-*",)),
    )
    assert config.budgets == (
        Budget(by="project", key="vision", daily=50.0, monthly=1000.0),
        Budget(by="tag:team", key="infra", daily=None, monthly=20.0),
    )


def test_rules_match_in_order_with_globs_and_a_project_tag_wins(tmp_path: Path) -> None:
    rules = load(tmp_path, FULL).attribution.rules
    assert project_of(Owner(user="bob"), None, rules) == "vision"
    assert project_of(Owner(user="carol", account="cv-lab"), None, rules) == "vision"
    assert project_of(Owner(user="carol", namespace="nlp-prod"), None, rules) == "nlp"
    assert project_of(Owner(user="carol", namespace="nlp"), None, rules) is None
    assert project_of(Owner(user="bob"), {"project": "moon"}, rules) == "moon"
    # A Slurm job's user counts where the process's own user is unknown.
    assert project_of(Owner(job_user="alice"), None, rules) == "vision"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[attribution]\nshare_idel = true\n", 2, "did you mean 'share_idle'?"),
        ("[attribution]\nshare_idle = 1\n", 2, "share_idle must be true or false, got 1"),
        (
            '[[attribution.rules]]\nusers = ["a"]\n',
            1,
            "[[attribution.rules]] (entry 1) needs a 'project' key",
        ),
        (
            '[[attribution.rules]]\nproject = "p"\n',
            1,
            "(project 'p') matches nothing: give users, accounts or namespaces",
        ),
        (
            '[[attribution.rules]]\nproject = "p"\nusers = ["a", 3]\n',
            3,
            "users must be a list of names or glob patterns",
        ),
        (
            '[[attribution.rules]]\nproject = "p"\nuser = ["a"]\n',
            3,
            "did you mean 'users'?",
        ),
        ('[[budgets]]\nby = "usr"\nkey = "a"\ndaily = 1\n', 2, "did you mean 'user'?"),
        ('[[budgets]]\nby = "user"\ndaily = 1\n', 1, "needs a 'key' key"),
        ('[[budgets]]\nby = "user"\nkey = "a"\n', 1, "needs daily or monthly (or both)"),
        (
            '[[budgets]]\nby = "user"\nkey = "a"\ndaily = -5\n',
            4,
            "daily cannot be negative, got -5",
        ),
        ('[[budgets]]\nby = "user"\nkey = "a"\nmonthly = 0\n', 4, "monthly must be greater than 0"),
        (
            '[[budgets]]\nby = "user"\nkey = "a"\ndaily = "ten"\n',
            4,
            "daily must be an amount of money per day, got 'ten'",
        ),
        ('[[budgets]]\nby = "user"\nkey = "a"\nweekly = 3\n', 4, "unknown key 'weekly'"),
        ('budgets = "x"\n', 1, "budgets must be [[budgets]] tables"),
    ],
)
def test_mistakes_name_the_line_the_key_and_the_fix(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    err = error_for(tmp_path, text)
    assert err.line == line, str(err)
    assert words in str(err)


def test_a_budget_far_beyond_any_bill_is_refused(tmp_path: Path) -> None:
    err = error_for(tmp_path, '[[budgets]]\nby = "user"\nkey = "a"\ndaily = 1e12\n')
    assert "daily is too large" in str(err)


def test_a_bad_second_budget_names_its_own_line(tmp_path: Path) -> None:
    err = error_for(tmp_path, FULL + '\n[[budgets]]\nby = "pod"\nkey = "p"\ndaily = nan\n')
    assert err.line == FULL.count("\n") + 5
    assert "finite" in str(err)
