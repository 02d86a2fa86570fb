from app.services.live import live_status
from db.runs import RunTracker


def test_step_events_give_one_loss_point_per_rank(db_url):
    t = RunTracker(db_url)
    run_id = t.create("pipeline", {"kind": "pipeline"})
    t.start(run_id)
    t.progress(run_id, "training", 1, 5)
    for step in (5, 10):
        t.event(
            run_id,
            "step",
            phase="training",
            epoch=1,
            step=step,
            loss=0.5,
            ranks=[{"rank": 0, "loss": 0.4, "samples_per_s": 10.0}, {"rank": 1, "loss": 0.6, "samples_per_s": 9.0}],
        )
    s = live_status(t, run_id)
    assert len(s.steps) == 4
    assert sorted(s.steps["rank"].tolist()) == [0, 0, 1, 1]
    assert s.steps[s.steps["rank"] == 1]["loss"].tolist() == [0.6, 0.6]
    assert s.step == 10 and s.epoch == 1
