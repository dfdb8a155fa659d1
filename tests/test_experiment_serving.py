"""Experiments when customers are served: each customer's arm stored at the first exposure, every exposure logged.

Real temporary SQLite databases; the declaration is built in the test (or
written to a temporary experiments file) so the shipped one is never relied upon.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from bot.insight import experiments
from bot.insight.experiments import (
    SUGGESTION_STRATEGIES,
    ExperimentConfigError,
    active_experiment,
    apply_experiment,
    assign_and_log,
    declared_or_exit,
    experiment_from_dict,
    load_experiments,
)
from core import db, metrics
from core.settings import PROJECT_ROOT, get_settings
from recommender import STRATEGIES
from tests.experiment_files import use_experiments

SPLIT = {"name": "split-test", "surface": "suggestions", "metric": "click_through",
         "arms": [{"name": "blend", "weight": 50}, {"name": "popularity", "weight": 50}]}


def declared(**changes) -> experiments.Experiment:
    return experiment_from_dict({**SPLIT, **changes})


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", f"sqlite:///{tmp_path / 'assistant.db'}")
    get_settings.cache_clear()
    db.connect.cache_clear()
    experiments.reset_experiments()
    yield db.connect()
    experiments.reset_experiments()
    get_settings.cache_clear()
    db.connect.cache_clear()


def exposures(engine):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(
            db.experiment_exposures.c.experiment, db.experiment_exposures.c.arm, db.experiment_exposures.c.customer_id,
            db.experiment_exposures.c.conversation_id, db.experiment_exposures.c.ts).order_by(db.experiment_exposures.c.id))]


def assignments(engine):
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(db.experiment_assignments.c.customer_id, db.experiment_assignments.c.arm)).all())


def errors(kind: str = "experiments") -> float:
    return metrics.ERRORS.labels(kind)._value.get()


def test_the_first_exposure_stores_the_arm_and_every_exposure_is_one_row(engine):
    experiment = declared()
    arm = assign_and_log(engine, experiment, "cust-1", "web:1", now=100.0)
    again = assign_and_log(engine, experiment, "cust-1", "web:2", now=200.0)

    assert arm == again == experiment.arm(experiment.assign("cust-1"))
    assert assignments(engine) == {"cust-1": arm.name}
    assert exposures(engine) == [("split-test", arm.name, "cust-1", "web:1", 100.0), ("split-test", arm.name, "cust-1", "web:2", 200.0)]


def test_a_repeat_exposure_known_to_the_process_costs_one_insert(engine):
    experiment = declared()
    assign_and_log(engine, experiment, "cust-1", "web:1")
    statements = []

    def note(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        assign_and_log(engine, experiment, "cust-1", "web:1")
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert [s.split()[0] for s in statements] == ["INSERT"]
    assert "experiment_exposures" in statements[0]


def test_changing_the_weights_mid_run_never_moves_an_exposed_customer(engine):
    before = declared()
    customers = [f"cust-{i}" for i in range(200)]
    first = {c: assign_and_log(engine, before, c, c).name for c in customers}
    assert set(first.values()) == {"blend", "popularity"}

    after = declared(arms=[{"name": "blend", "weight": 0}, {"name": "popularity", "weight": 100}])
    experiments.reset_experiments()  # another process, or a restart: nothing remembered in memory
    assert {c: assign_and_log(engine, after, c, c).name for c in customers} == first
    newcomers = {assign_and_log(engine, after, f"new-{i}", None).name for i in range(50)}
    assert newcomers == {"popularity"}  # customers not yet exposed follow the new weights
    logged = [arm for _, arm, customer, _, _ in exposures(engine) if customer in first]
    assert logged == [first[c] for c in customers] * 2


def test_processes_racing_on_a_customer_agree_on_the_stored_arm(engine):
    experiment = declared()
    other = "popularity" if experiment.assign("cust-9") == "blend" else "blend"
    with engine.begin() as conn:  # another process stored it first (under other weights)
        conn.execute(db.experiment_assignments.insert().values(experiment="split-test", customer_id="cust-9", arm=other, assigned_at=1.0))
    assert assign_and_log(engine, experiment, "cust-9", "web:9").name == other
    assert assignments(engine) == {"cust-9": other}


def test_a_customer_whose_arm_was_removed_is_served_the_control_and_logged_apart(engine):
    three = declared(arms=["blend", "popularity", "content"])
    customer = next(f"c{i}" for i in range(100) if three.assign(f"c{i}") == "content")
    assert assign_and_log(engine, three, customer, "web:1").name == "content"

    two = declared(arms=["blend", "popularity"])  # "content" dropped from the declaration
    experiments.reset_experiments()
    assert assign_and_log(engine, two, customer, "web:2") == two.control
    assert exposures(engine)[-1][1] == "removed:content"  # in no arm's figures
    assert assignments(engine) == {customer: "content"}  # still theirs, should the arm come back
    assert assign_and_log(engine, three, customer, "web:3").name == "content"


def test_a_database_failure_costs_the_log_not_the_answer(engine, tmp_path, caplog):
    experiment = declared()
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: every statement fails
    before = errors()
    arm = assign_and_log(broken, experiment, "cust-3", "web:3")
    assert arm.name == experiment.assign("cust-3")
    assert errors() == before + 1 and "not logged" in caplog.text


def test_an_unreachable_database_still_serves_the_arm(engine, tmp_path, monkeypatch):
    use_experiments(monkeypatch, tmp_path, [SPLIT])
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", "sqlite:////proc/no-such-dir/assistant.db")
    get_settings.cache_clear()
    db.connect.cache_clear()
    before = errors()
    assert apply_experiment("suggestions", "cust-4", "web:4").name == declared().assign("cust-4")
    assert errors() == before + 1


def test_only_an_enabled_experiment_on_the_surface_is_active(engine, tmp_path, monkeypatch):
    answers = {"name": "answers-test", "surface": "answers", "metric": "thumbs_up", "enabled": False,
               "arms": [{"name": "reranked"}, {"name": "raw", "rerank": False}]}
    use_experiments(monkeypatch, tmp_path, [SPLIT, answers])
    assert active_experiment("suggestions").name == "split-test"
    assert active_experiment("answers") is None
    assert apply_experiment("answers", "cust-5", "web:5") is None
    assert exposures(engine) == []  # no experiment: nothing logged
    assert apply_experiment("suggestions", "cust-5", "web:5").name in {"blend", "popularity"}
    assert len(exposures(engine)) == 1
    with pytest.raises(ValueError, match="unknown experiment surface 'answer'"):
        active_experiment("answer")


def test_the_shipped_declaration_loads_and_runs_nothing_until_switched_on():
    shipped = load_experiments(PROJECT_ROOT / "bot" / "experiments.yml")
    assert {e.surface for e in shipped} == {"suggestions", "answers"}
    assert active_experiment("suggestions", shipped) is None and active_experiment("answers", shipped) is None


def test_every_suggestion_strategy_is_one_the_recommender_ranks_with():
    assert set(SUGGESTION_STRATEGIES) == set(STRATEGIES) | {"off"}


# ------------------------------------------------------------------ refused at start


@pytest.mark.parametrize("change, named", [
    ({"arms": [{"name": "blend"}, {"name": "populr"}]}, "arm 'populr': unknown suggestion strategy 'populr'"),
    ({"arms": [{"name": "blend", "weight": 0}, {"name": "popularity", "weight": 0}]}, "do not sum to a positive number"),
    ({"metric": "clicks"}, "unknown metric 'clicks'"),
    ({"guardrail": ["handoff"]}, "unknown field(s) ['guardrail']"),
    ({"surface": "answer"}, "surface must be one of"),
])
def test_a_broken_declaration_stops_a_server_naming_the_experiment_and_field(tmp_path, monkeypatch, capsys, change, named):
    use_experiments(monkeypatch, tmp_path, [{**SPLIT, **change}])
    try:
        with pytest.raises(SystemExit) as stopped:
            declared_or_exit("the Rasa server")
        assert stopped.value.code == 2
        message = capsys.readouterr().err
        assert message.startswith("cannot start the Rasa server: ") and "experiment 1 'split-test'" in message
        assert named in message
    finally:
        experiments.reset_experiments()
        get_settings.cache_clear()


def test_the_action_server_refuses_to_start_with_a_broken_declaration(tmp_path, monkeypatch, capsys):
    from bot import action_server

    use_experiments(monkeypatch, tmp_path, [{**SPLIT, "metric": "clicks"}])
    try:
        assert action_server.main([]) == 2
        assert "cannot start the action server: " in capsys.readouterr().err
    finally:
        experiments.reset_experiments()
        get_settings.cache_clear()


def test_the_launcher_refuses_before_any_training(tmp_path, monkeypatch, capsys):
    from bot import serve

    path = use_experiments(monkeypatch, tmp_path, [{**SPLIT, "arms": ["blend", "magic"]}])
    monkeypatch.setattr(serve, "prepare", lambda *a, **k: pytest.fail("trained despite a broken experiments file"))
    try:
        assert serve.main([]) == 2
        err = capsys.readouterr().err
        assert f"cannot start the assistant: {path}: experiment 1 'split-test', arm 'magic'" in err
    finally:
        experiments.reset_experiments()
        get_settings.cache_clear()


def test_the_rasa_server_checks_the_declaration_when_it_registers_the_channels(monkeypatch):
    from bot.channels import base

    checked = []
    monkeypatch.setattr(base.rasa_shim, "install_or_exit", lambda: None)
    monkeypatch.setattr(base.experiments, "declared_or_exit", checked.append)
    from sanic import Blueprint

    base.DeskChannel.watch(base.DeskChannel.__new__(base.DeskChannel), Blueprint("probe"))
    assert checked == ["the Rasa server"]


def test_a_declaration_unreadable_at_first_use_runs_no_experiment(engine, tmp_path, monkeypatch, caplog):
    use_experiments(monkeypatch, tmp_path, [{**SPLIT, "metric": "clicks"}])
    before = errors()
    assert apply_experiment("suggestions", "cust-6", "web:6") is None
    assert errors() == before + 1 and "no experiment runs in this process" in caplog.text
    assert exposures(engine) == []
    with pytest.raises(ExperimentConfigError):
        load_experiments()


def test_two_enabled_experiments_on_one_surface_stop_a_server(tmp_path, monkeypatch, capsys):
    use_experiments(monkeypatch, tmp_path, [SPLIT, {**SPLIT, "name": "another"}])
    try:
        with pytest.raises(SystemExit):
            declared_or_exit("the action server")
        assert "more than one enabled experiment on the 'suggestions' surface" in capsys.readouterr().err
    finally:
        experiments.reset_experiments()
        get_settings.cache_clear()


def test_the_declaration_is_read_once_per_process(engine, tmp_path, monkeypatch):
    path = use_experiments(monkeypatch, tmp_path, [SPLIT])
    assert active_experiment("suggestions").name == "split-test"
    path.write_text("experiments: []\n")  # changed while serving: applies at the next start
    assert active_experiment("suggestions").name == "split-test"
    experiments.reset_experiments()
    assert active_experiment("suggestions") is None
