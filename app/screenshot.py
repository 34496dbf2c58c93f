"""Save a screenshot of the main window on a project, once its visible thumbnails are loaded.

    QT_QPA_PLATFORM=offscreen python -m app.screenshot PROJECT OUT.png [--size 1280x800]
        [--view map|training|review|predictions] [--predict FOLDER] [--export-output EXPORT.png]
        [--color label|pseudo|confidence|disagreement|vote_entropy]
        [--train ENCODER --steps N --projection umap|pca]
        [--strategy S] [--detail-output DETAIL.png] [--help-output HELP.png] [--key-points]
        [--about-output ABOUT.png] [--guide-output GUIDE.png] [--agreement-output AGREEMENT.png]
        [--annotator NAME]

--view raises the embedding map or the training dock, or shows the review queue with the face
details (--strategy picks its ranking; --detail-output also saves the details dock alone);
--help-output also saves the window with the keyboard help shown; --about-output and
--guide-output save Help ▸ About and Help ▸ User guide's windows; --agreement-output the Agreement
dock once it has counted; --view predictions runs File ▸
Predict a folder… on --predict's folder and shows its table, the right-hand docks closed (the table
wants the width); --export-output saves File ▸ Export model…'s dialog after an ONNX export into a
temporary folder; --train first runs a training
from the training panel (its worker process) and waits for it to end. Used for docs/screenshots/; works
headless. Settings go to a temp folder unless FER_STUDIO_SETTINGS is set, so the user's window
layout is not touched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from PySide6.QtCore import QEventLoop, QPointF, Qt, QTimer


def _wait(app, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if condition():
            return True
        time.sleep(0.01)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project")
    parser.add_argument("output")
    parser.add_argument("--size", default="1280x800")
    parser.add_argument("--view", choices=("map", "training", "review", "predictions"))
    parser.add_argument("--predict", metavar="FOLDER", help="with --view predictions: the photos to predict")
    parser.add_argument("--export-output", help="also save File ▸ Export model…'s dialog after an export here")
    parser.add_argument("--strategy", help="the review queue's strategy (with --view review)")
    parser.add_argument("--detail-output", help="also save the face details dock alone here")
    parser.add_argument("--help-output", help="also save the window with the keyboard help shown here")
    parser.add_argument("--about-output", help="also save Help ▸ About's window here")
    parser.add_argument("--guide-output", help="also save Help ▸ User guide's window here")
    parser.add_argument("--agreement-output", help="also save the Agreement dock alone here, once it has counted")
    parser.add_argument(
        "--key-points",
        action="store_true",
        help="tick the details' Key points (without --view review: the grid's first face, details raised)",
    )
    parser.add_argument("--dock-width", type=int, default=0, help="width of the right-hand docks in pixels")
    parser.add_argument("--annotator", help="the status bar's annotator (the adjudicator of an adjudication queue)")
    parser.add_argument("--color", help="the map's colouring: label, pseudo, confidence, disagreement or vote_entropy")
    parser.add_argument(
        "--select-around",
        metavar="CLASS",
        help="select on the map the faces around the middle of CLASS's pseudo-labels, and hover one",
    )
    parser.add_argument("--no-hover", action="store_true", help="with --select-around: select only, hover none")
    parser.add_argument("--train", metavar="ENCODER", help="first train with this encoder from the panel")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--projection", default="umap")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    os.environ.setdefault("FER_STUDIO_SETTINGS", os.path.join(tempfile.mkdtemp(), "settings.ini"))

    from app.face_model import ThumbState
    from app.main import application
    from app.main_window import MainWindow

    app = application()
    window = MainWindow()
    window.resize(width, height)
    window.show()
    if args.annotator:
        window.labeling.set_annotator(args.annotator)
    if not window.open_project(args.project):
        return 1
    if args.dock_width:
        window.resizeDocks([window.map_dock], [args.dock_width], Qt.Orientation.Horizontal)
    if args.train and not _train(app, window, args):
        return 1
    _wait(app, lambda: window.map_view.loading is None, 120)  # a large run's map loads in the background
    if args.select_around and args.view == "review":
        # First, so the queue ranks the selection; no hover: the map is not in view.
        _select_around(app, window, args.select_around, hover=False)
    if args.view == "map":
        window.map_dock.raise_()
    elif args.view == "training":
        window.training_dock.raise_()
    elif args.view == "review":
        _review(app, window, args.strategy)
    elif args.view == "predictions" and not _predict(app, window, args.predict):
        return 1
    if args.key_points:
        _key_points(app, window, args.view != "review")
    if args.color:
        window.map_view.set_color_mode(args.color)
    if args.select_around and args.view != "review":
        _select_around(app, window, args.select_around, hover=not args.no_hover)
    grid = window.review.grid if args.view == "review" else window.grid
    model = grid.face_model()

    def visible_loaded() -> bool:
        rows = [
            r for r in range(model.rowCount()) if grid.visualRect(model.index(r)).intersects(grid.viewport().rect())
        ]
        return bool(rows) and all(model.thumb_state(r) != ThumbState.PENDING for r in rows)

    QTimer.singleShot(0, grid.viewport().update)
    if args.view != "predictions" and not _wait(app, visible_loaded, 60):
        print("warning: not every visible thumbnail loaded in time", file=sys.stderr)
    _wait(app, lambda: False, 0.3)  # the last thumbnails' repaints
    window.grab().save(args.output)
    print(f"saved {args.output}")
    if args.detail_output:
        window.detail_dock.grab().save(args.detail_output)
        print(f"saved {args.detail_output}")
    if args.agreement_output:
        panel = window.agreement
        window.agreement_dock.raise_()
        _wait(app, lambda: panel.report is not None and not panel.progress.text(), 60)
        _wait(app, lambda: False, 0.3)
        window.agreement_dock.grab().save(args.agreement_output)
        print(f"saved {args.agreement_output}")
    if args.help_output:
        window.help_overlay.toggle()
        _wait(app, lambda: False, 0.3)
        window.grab().save(args.help_output)
        print(f"saved {args.help_output}")
    for output, show in ((args.about_output, window.show_about), (args.guide_output, window.show_user_guide)):
        if output:
            dialog = show()
            _wait(app, lambda: False, 0.3)
            dialog.grab().save(output)
            print(f"saved {output}")
    if args.export_output and not _export(app, window, args.export_output):
        return 1
    window.close()
    return 0


def _predict(app, window, folder: str | None) -> bool:
    """File ▸ Predict a folder… on `folder`, as a user would; the table shown, its thumbnails loaded."""
    if not folder:
        print("--view predictions needs --predict FOLDER", file=sys.stderr)
        return False
    for dock in (window.map_dock, window.training_dock, window.detail_dock):
        dock.hide()
    view = window.predictions
    if not window.predict([folder]):
        return False
    _wait(app, lambda: not view.running, 600)
    if view.table is None:
        print(f"prediction failed: {view.problem_label.text()}", file=sys.stderr)
        return False
    model = view.model

    def thumbnails_loaded() -> bool:
        rows = [r for r in range(view.proxy.rowCount()) if not view.table_view.isRowHidden(r)][:20]
        wanted = [view.proxy.mapToSource(view.proxy.index(r, 0)).row() for r in rows]
        return all(
            model.face(r).error
            or model.index(r, 0).data(Qt.ItemDataRole.DecorationRole) is not None
            or model.thumbnails.error((model.face(r).source, r))
            for r in wanted
        )

    if not _wait(app, thumbnails_loaded, 30):
        print("warning: not every thumbnail loaded in time", file=sys.stderr)
    return True


def _export(app, window, output: str) -> bool:
    """File ▸ Export model… to ONNX in a temporary folder, the dialog saved once it has finished."""
    dialog = window.show_export_model()
    if dialog is None:
        return False
    dialog.set_values(folder=os.path.join(tempfile.mkdtemp(), f"{window.state.root.name}-model"))
    if not dialog.export():
        return False
    _wait(app, lambda: not dialog.running, 600)
    if dialog.result_event is None:
        print(f"export failed: {dialog.error}", file=sys.stderr)
        return False
    _wait(app, lambda: False, 0.3)
    dialog.grab().save(output)
    print(f"saved {output}")
    return True


def _key_points(app, window, first_face: bool) -> None:
    """The details dock with the key points drawn, on the grid's first face if asked."""
    detail = window.detail
    if first_face:
        window.grid.select_row(0)
        window.detail_dock.raise_()
    _wait(app, lambda: detail.face is not None and detail.large_loader.cached(detail.face.id) is not None, 30)
    detail.points_box.setChecked(True)
    _wait(app, lambda: False, 0.2)


def _review(app, window, strategy: str | None) -> None:
    """The review queue with its first face in the details dock, everything loaded."""
    review, detail = window.review, window.detail
    window.show_review()
    if strategy:
        review.set_strategy(strategy)
    _wait(app, lambda: review.answered is not None and review.answered == review.request() and not review.building, 120)
    _wait(app, lambda: not detail.index_runner.busy, 60)
    face = detail.face

    def detail_loaded() -> bool:
        shown = detail.strip.neighbours[: detail.strip.visible_count()]
        neighbours = [f for _n, f in shown if f is not None]
        return (
            face is not None
            and detail.large_loader.cached(face.id) is not None
            and all(window.loader.cached(f.id) is not None for f in neighbours)
        )

    if not _wait(app, detail_loaded, 60):
        print("warning: the detail panel's images did not all load in time", file=sys.stderr)
    detail.show_face(face, detail.item, detail.queue_size, detail.queue_note)


def _select_around(app, window, class_name: str, hover: bool = True) -> None:
    """A rectangle over the middle half of one pseudo-label's faces, and (`hover`) a hover on one
    of them, to show selection, the filtered grid and queue, and the hover card."""
    import numpy as np

    from core.classes import class_index

    view = window.map_view
    points = view.data.xy[view.data.pseudo == class_index(class_name)]
    low, high = np.percentile(points, 25, axis=0), np.percentile(points, 75, axis=0)
    view.select_rect(tuple(low), tuple(high))
    _wait(app, lambda: False, 0.5)
    if not hover:
        return
    middle = view.view.mapViewToScene(QPointF(*np.median(points, axis=0)))
    view._mouse_moved((middle,))
    _wait(app, lambda: view.hover_card.image.pixmap() is not None and not view.hover_card.image.pixmap().isNull(), 10)
    view._mouse_moved((middle,))  # refill the card now that the thumbnail is loaded


def _train(app, window, args) -> bool:
    """Run a training from the panel, as a user would, and wait for its worker to end."""
    panel = window.training
    window.training_dock.raise_()
    panel.form.set_values(encoder=args.train, steps=args.steps, projection=args.projection)
    if not panel.start():
        print(f"cannot start training: {panel.status.text()}", file=sys.stderr)
        return False
    _wait(app, lambda: not panel.busy, 3600)
    print(f"training: {panel.status.text()}")
    from core.training.events import Event

    return panel.outcome is not None and panel.outcome.status == Event.FINISHED


if __name__ == "__main__":
    sys.exit(main())
