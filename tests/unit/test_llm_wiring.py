"""Choosing the agents: ADGRAPH_AGENTS / --agents, the configured server or the embedded one."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agents.llm_ad import LLMDesigner, LLMDeveloper, LLMPlanner
from agents.rules import RuleDesigner, RuleDeveloper, RulePlanner
from kernel.errors import AdgraphError
from service.cli import app
from service.settings import Settings
from service.wiring import make_ad_context, make_homepage_context, open_llm
from tests.unit.fakes import FakeRenderer


def test_rules_are_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("ADGRAPH_AGENTS", raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.agents == "rules"
    ctx = make_ad_context(settings, FakeRenderer())
    assert isinstance(ctx.planner, RulePlanner) and isinstance(ctx.designer, RuleDesigner)
    assert isinstance(ctx.developer, RuleDeveloper)


async def test_rules_start_no_llm(tmp_path) -> None:
    async with open_llm(Settings(data_dir=tmp_path, agents="rules")) as chat:
        assert chat is None


async def test_a_configured_server_is_used_as_is(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ADGRAPH_AGENTS", "llm")
    monkeypatch.setenv("ADGRAPH_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("ADGRAPH_LLM_MODEL", "qwen2.5:7b")
    monkeypatch.setenv("ADGRAPH_LLM_API_KEY", "sk-test")
    settings = Settings(data_dir=tmp_path)
    async with open_llm(settings) as chat:
        assert chat.openai_api_base == "http://127.0.0.1:11434/v1" and chat.model_name == "qwen2.5:7b"
        assert chat.openai_api_key.get_secret_value() == "sk-test"
        ctx = make_ad_context(settings, FakeRenderer(), chat=chat)
        assert isinstance(ctx.planner, LLMPlanner) and isinstance(ctx.designer, LLMDesigner)
        assert isinstance(ctx.developer, LLMDeveloper)
        assert ctx.planner.usage is ctx.designer.usage is ctx.developer.usage  # one tally per context


async def test_a_server_without_a_model_name_is_refused(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, agents="llm", llm_base_url="http://127.0.0.1:8001/v1")
    with pytest.raises(AdgraphError) as e:
        async with open_llm(settings):
            pass
    assert e.value.code == "INVALID_INPUT" and "ADGRAPH_LLM_MODEL" in e.value.message


def test_cli_refuses_unknown_agents(tmp_path) -> None:
    photo = tmp_path / "p.png"
    photo.write_bytes(b"")
    r = CliRunner().invoke(
        app,
        ["ad", "--product", str(photo), "--headline", "x", "--prompt", "y", "--out", str(tmp_path / "o"),
         "--agents", "gpt"],
    )  # fmt: skip
    assert r.exit_code == 2
    assert json.loads(r.stdout.splitlines()[0])["error"]["code"] == "INVALID_INPUT"
    assert "--agents 'gpt'" in r.stderr


async def test_the_homepage_shares_the_ad_contexts_llm(tmp_path) -> None:
    from agents.llm_site import LLMSiteDesigner, LLMSiteDeveloper, LLMSitePlanner
    from agents.site_rules import RuleSitePlanner

    settings = Settings(
        data_dir=tmp_path, agents="llm", llm_base_url="http://127.0.0.1:8001/v1", llm_model="m"
    )
    async with open_llm(settings) as chat:
        ad = make_ad_context(settings, FakeRenderer(), chat=chat)
        assert ad.planner.chat is chat
        site = make_homepage_context(settings, FakeRenderer(), chat=chat)
        assert isinstance(site.planner, LLMSitePlanner) and isinstance(site.designer, LLMSiteDesigner)
        assert isinstance(site.developer, LLMSiteDeveloper) and site.planner.chat is chat
    rules = make_ad_context(Settings(data_dir=tmp_path), FakeRenderer())
    assert not hasattr(rules.planner, "chat")
    assert isinstance(make_homepage_context(settings, FakeRenderer(), chat=None).planner, RuleSitePlanner)
