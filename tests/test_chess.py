"""The chess puzzles (plugins/builtin/datasets/chess_puzzles.py) on real puzzle rows written here, in the Lichess puzzle
database schema and in EleutherAI/lichess-puzzles' (ctx, target).

* ``lichess_puzzles`` (this project's n-candidate choice form): legality is checked independently with python-chess:
  the prompt's FEN is recomputed from the row, every candidate must parse as a legal move there;
* ``lichess_puzzles_binary`` (EleutherAI/w2s's binary form, its ``chess`` branch): texts and labels are compared
  with the reference's ``format_lichess`` rewritten here (one ``random.Random(seed)`` walked over the rows; the
  alternative from a UCI engine's two best lines at depth 3), the engine being a small fake UCI engine written here
  (Stockfish is not a Python package).
"""

from __future__ import annotations

import random
import re
import sys

import numpy as np
import pytest

chess = pytest.importorskip("chess")

pytest.importorskip("chess.engine")
from w2s_harness.plugins.datasets.chess_puzzles import LichessPuzzles, LichessPuzzlesBinary

from w2s_harness import ConfigError, DataError

#: The first rows of lichess_db_puzzle.csv (database.lichess.org, CC0).
LICHESS = [
    {"PuzzleId": "00008", "FEN": "r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24",
     "Moves": "f2g3 e6e7 b2b1 b3c1 b1c1 h6c1", "Rating": 1913, "RatingDeviation": 75, "Popularity": 94,
     "NbPlays": 6230, "Themes": "crushing hangingPiece long middlegame",
     "GameUrl": "https://lichess.org/787zsVup/black#48", "OpeningTags": ""},
    {"PuzzleId": "0000D", "FEN": "5rk1/1p3ppp/pq3b2/8/8/1P1Q1N2/P4PPP/3R2K1 w - - 2 27",
     "Moves": "d3d6 f8d8 d6d8 f6d8", "Rating": 1426, "RatingDeviation": 500, "Popularity": 2, "NbPlays": 9,
     "Themes": "advantage endgame short", "GameUrl": "https://lichess.org/F8M8OS71#53", "OpeningTags": ""},
    {"PuzzleId": "0009B", "FEN": "r2qr1k1/b1p2ppp/pp4n1/P1P1p3/4P1n1/B2P2Pb/3NBP1P/RN1QR1K1 b - - 1 16",
     "Moves": "b6c5 e2g4 h3g4 d1g4", "Rating": 1059, "RatingDeviation": 76, "Popularity": 88, "NbPlays": 542,
     "Themes": "advantage middlegame short", "GameUrl": "https://lichess.org/4MWQCxQ6/black#32",
     "OpeningTags": "Kings_Pawn_Game"},
    {"PuzzleId": "000aY", "FEN": "r4rk1/pp3ppp/2n1b3/q1pp2B1/8/P1Q2NP1/1PP1PP1P/2KR3R w - - 0 15",
     "Moves": "g5e7 a5c3 b2c3 c6e7", "Rating": 1500, "RatingDeviation": 74, "Popularity": 89, "NbPlays": 170,
     "Themes": "advantage master middlegame short", "GameUrl": "https://lichess.org/iihZGl6t#29",
     "OpeningTags": "Benoni_Defense"},
]


def write_csv(path, rows):
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


@pytest.fixture
def puzzles(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bad = {**LICHESS[0], "PuzzleId": "bad", "Moves": "a1a8 e6e7"}  # the opponent's move is illegal: skipped
    return write_csv(tmp_path / "lichess_db_puzzle.csv", [*LICHESS, bad])


def test_lichess_schema_prompts_and_legal_candidates(puzzles):
    ds = LichessPuzzles(data_files={"train": puzzles}, n_test=1)
    data = ds.load()
    assert len(data) == 4 and data.class_names == ["1", "2", "3", "4"]
    by_fen = {}
    for row in LICHESS:
        board = chess.Board(row["FEN"])
        first, second = (chess.Move.from_uci(m) for m in row["Moves"].split()[:2])
        last = board.san(first)
        board.push(first)
        by_fen[board.fen()] = (board, last, board.san(second), row["Rating"])
    for prompt, pair, label, diff in zip(data.texts, data.pairs, data.labels, data.difficulty):
        fen = prompt.split("Chess position (FEN): ")[1].split("\n")[0]
        board, last, answer, rating = by_fen[fen]
        side = "White" if board.turn == chess.WHITE else "Black"
        assert prompt == f"Chess position (FEN): {fen}\nLast move: {last}\n{side} to move. Best move:"
        moves = [text[len(prompt) + 1:] for text in pair]
        assert all(text == f"{prompt} {m}" for text, m in zip(pair, moves))
        assert moves[label] == answer and len(set(moves)) == 4
        for m in moves:  # every candidate is a legal move of the puzzle position
            assert board.parse_san(m) in board.legal_moves
        assert diff == rating
    assert sorted(ds.difficulty()) == sorted(float(r["Rating"]) for r in LICHESS)  # for easy-to-hard splits


def test_candidates_are_seeded(puzzles):
    a = LichessPuzzles(data_files=puzzles, n_test=1).load()
    b = LichessPuzzles(data_files=puzzles, n_test=1).load()
    assert a.pairs == b.pairs and np.array_equal(a.labels, b.labels)
    seen = {tuple(sorted(p)) for p in a.pairs}
    for seed in range(1, 6):
        c = LichessPuzzles(data_files=puzzles, n_test=1, shuffle_seed=seed).load()
        seen |= {tuple(sorted(p)) for p in c.pairs}
    assert len(seen) > len(a)  # other seeds draw other alternatives


def test_uci_notation_and_two_candidates(puzzles):
    data = LichessPuzzles(data_files=puzzles, n_test=1, notation="uci", n_candidates=2).load()
    answers = {row["Moves"].split()[1] for row in LICHESS}
    for prompt, pair, label in zip(data.texts, data.pairs, data.labels):
        fen = prompt.split("Chess position (FEN): ")[1].split("\n")[0]
        board = chess.Board(fen)
        moves = [t[len(prompt) + 1:] for t in pair]
        assert moves[label] in answers
        assert all(chess.Move.from_uci(m) in board.legal_moves for m in moves)


def test_pgn_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [
        {"ctx": "1. e4 e5 2. Nf3 Nc6 3. Bc4 Nd4 4. Nxe5 Qg5 5.", "target": " Nxf7"},
        {"ctx": "1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6", "target": " Qxf7#"},
        {"ctx": "1. d4 d5 2. c4 e6 3. Nc3 Nf6 4. Bg5 Be7 5. e3", "target": " O-O"},
        {"ctx": "1. e4 e5 2. Ke3", "target": " Qg5+"},  # 2. Ke3 is illegal: skipped
    ]
    path = write_csv(tmp_path / "puzzles.csv", rows)
    ds = LichessPuzzles(data_files=path, n_test=1)
    data = ds.load()
    assert len(data) == 3 and data.difficulty is None
    expected = {}
    for r in rows[:3]:  # replayed independently: SAN tokens without the move numbers
        board = chess.Board()
        for tok in r["ctx"].split():
            if not tok[0].isdigit():
                board.push_san(tok)
        expected[board.fen()] = (board, r["target"].strip())
    for prompt, pair, label in zip(data.texts, data.pairs, data.labels):
        fen = prompt.split("Chess position (FEN): ")[1].split("\n")[0]
        board, target = expected[fen]
        assert "\nMoves so far: " in prompt
        moves = [t[len(prompt) + 1:] for t in pair]
        assert moves[label] == target
        assert all(board.parse_san(m) in board.legal_moves for m in moves)


def test_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError, match="n_candidates must be an integer >= 2"):
        LichessPuzzles(n_candidates=1)
    with pytest.raises(ConfigError, match="notation must be one of san, uci"):
        LichessPuzzles(notation="lan")
    path = write_csv(tmp_path / "other.csv", [{"a": 1, "b": 2}] * 4)
    with pytest.raises(DataError, match="Lichess puzzle schema"):
        LichessPuzzles(data_files=path).load()


# ------------------------------------------------------------------------ EleutherAI/w2s's binary form

#: Games in EleutherAI/lichess-puzzles' schema: ``ctx`` the PGN movetext so far, ``target`` the move, a space first.
PGN_ROWS = [
    {"ctx": "1. e4 e5 2. Nf3 Nc6 3. Bc4 Nd4 4. Nxe5 Qg5 5.", "target": " Nxf7"},
    {"ctx": "1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6", "target": " Qxf7#"},
    {"ctx": "1. d4 d5 2. c4 e6 3. Nc3 Nf6 4. Bg5 Be7 5. e3", "target": " O-O"},
    {"ctx": "1. e4 c5 2. Nf3 d6 3. d4 cxd4 4. Nxd4 Nf6 5. Nc3 a6 6.", "target": " Be3"},
    {"ctx": "1. e4 e5 2. Nf3 d6 3. Bc4 Bg4 4. Nc3 g6 5.", "target": " Nxe5"},
    {"ctx": "1. f3 e5 2. g4", "target": " Qh4#"},
    {"ctx": "1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. Ba4 Nf6 5. O-O Be7 6. Re1 b5 7. Bb3 d6 8. c3 O-O 9.",
     "target": " h3"},
    {"ctx": "1. d4 Nf6 2. c4 g6 3. Nc3 d5 4. cxd5 Nxd5 5. e4 Nxc3 6. bxc3 Bg7 7. Nf3 c5 8. Rb1 O-O 9. Be2 cxd4 10.",
     "target": " cxd4"},
]

#: A UCI engine for the tests: its "best lines" are the legal moves ordered checks first, then captures, then by UCI
#: text (so the puzzle's move is often among the two best and the reference's exclusion of it is exercised).
FAKE_ENGINE = r"""
import sys
import chess

board = chess.Board()
lines = 1
def out(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "uci":
        out("id name fake-top-moves")
        out("option name MultiPV type spin default 1 min 1 max 500")
        out("uciok")
    elif words[0] == "isready":
        out("readyok")
    elif words[0] == "setoption" and words[2] == "MultiPV":
        lines = int(words[4])
    elif words[0] == "position":
        if words[1] == "startpos":
            board = chess.Board()
            rest = words[2:]
        else:
            board = chess.Board(" ".join(words[2:8]))
            rest = words[8:]
        for move in rest[1:] if rest and rest[0] == "moves" else []:
            board.push_uci(move)
    elif words[0] == "go":
        ranked = sorted(board.legal_moves,
                        key=lambda m: (not board.gives_check(m), not board.is_capture(m), m.uci()))
        for k, move in enumerate(ranked[:lines]):
            out(f"info depth 3 multipv {k + 1} score cp {100 - k} pv {move.uci()}")
        out(f"bestmove {ranked[0].uci()}")
    elif words[0] == "quit":
        break
"""


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "fake-engine"
    path.write_text(f"#!{sys.executable}\n{FAKE_ENGINE}")
    path.chmod(0o755)
    return str(path)


def reference_format(rows, engine_path, seed=0):
    """EleutherAI/w2s's ``format_lichess`` (branch ``chess``, w2s/ds_registry.py), rewritten: one Random(seed) for
    the split, the rows formatted in order; ``get_top_moves`` replays the movetext without move numbers and asks
    the engine for its two best lines at depth 3."""
    pattern = re.compile(r"\d+\.\.\.|\d+\.")
    eng = chess.engine.SimpleEngine.popen_uci(engine_path)
    try:
        def get_top_moves(moves, k=3):
            board = chess.Board()
            for move in re.sub(pattern, "", moves).split():
                board.push_san(move)
            info = eng.analyse(board, chess.engine.Limit(depth=3), multipv=k)
            return [board.san(item["pv"][0]) for item in info]

        rng = random.Random(seed)
        out = []
        for ex in rows:
            hard_label = int(rng.random() < 0.5)
            target_move = ex["target"].strip()
            alternative_moves = [m for m in get_top_moves(ex["ctx"], k=2) if m != target_move]
            choices = [target_move, alternative_moves[0]]
            rng.shuffle(choices)
            correct = choices.index(target_move)
            response = correct if hard_label else 1 - correct
            txt = ("Find the best move. Previous moves:"
                   f"\n{ex['ctx']}\n"
                   f"\n1) {choices[0]}"
                   f"\n2) {choices[1]}"
                   f"\nA: {response + 1}")
            out.append((txt, hard_label))
        return out
    finally:
        eng.quit()


def parse_binary(text):
    """``(previous moves, [choice 1, choice 2], answer index)`` of a binary-form text."""
    head, rest = text.split("\n\n1) ")
    assert head.startswith("Find the best move. Previous moves:\n")
    first, rest = rest.split("\n2) ")
    second, answer = rest.split("\nA: ")
    return head.removeprefix("Find the best move. Previous moves:\n"), [first, second], int(answer) - 1


def test_binary_matches_the_reference_formatter(tmp_path, monkeypatch, engine):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    path = write_csv(tmp_path / "puzzles.csv", PGN_ROWS)
    for seed in (0, 1, 7):
        want = reference_format(PGN_ROWS, engine, seed)
        # every row used (unbalanced): load() holds the rows in row order
        ds = LichessPuzzlesBinary(engine=engine, data_files={"train": path}, format_seed=seed, balance=False,
                                  n_test=2)
        data = ds.load()
        assert data.class_names == ["false", "true"]
        assert list(zip(data.texts, data.labels.tolist())) == want
    # the fake engine's best line is the puzzle's move in some rows: the reference's exclusion was exercised
    excluded = 0
    for row in PGN_ROWS:
        board = chess.Board()
        for tok in re.sub(r"\d+\.", "", row["ctx"]).split():
            board.push_san(tok)
        best = min(board.legal_moves, key=lambda m: (not board.gives_check(m), not board.is_capture(m), m.uci()))
        excluded += board.san(best) == row["target"].strip()
    assert excluded >= 1


def test_binary_defaults_are_the_reference_recipe(tmp_path, monkeypatch, engine):
    """Balanced 50/50 by default, a 5,000-row test pool drawn from the one split, and the identity names the
    engine and the form."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    path = write_csv(tmp_path / "puzzles.csv", PGN_ROWS)
    ds = LichessPuzzlesBinary(engine=engine, data_files=path, n_test=2)
    assert ds.balance and LichessPuzzlesBinary(data_files=path).n_test == 5000
    labels = ds.load().labels
    assert (labels == 0).sum() == (labels == 1).sum()
    params = ds.params()
    assert params["engine"] == engine and params["engine_depth"] == 3 and params["chess"] == "binary-v1"


def test_binary_without_engine_and_lichess_schema(puzzles, tmp_path, monkeypatch):
    """Without an engine the alternative is a seeded random legal move; the coins and the shuffle are still the
    reference's draws. The Lichess CSV gives the position and the last move as the "previous moves", and its rating
    is the difficulty (the hub schema has none)."""
    ds = LichessPuzzlesBinary(data_files={"train": puzzles}, balance=False, n_test=1)
    data = ds.load()
    assert len(data) == 4  # the illegal row is skipped
    rng = random.Random(0)
    draws = []
    for _ in range(5):  # every row of the split draws its coin and its shuffle, the skipped one too
        label = int(rng.random() < 0.5)
        order = [0, 1]
        rng.shuffle(order)
        draws.append((label, order))
    by_fen = {}
    for i, row in enumerate(LICHESS):
        board = chess.Board(row["FEN"])
        first, second = (chess.Move.from_uci(m) for m in row["Moves"].split()[:2])
        last = board.san(first)
        board.push(first)
        by_fen[board.fen()] = (i, board, last, board.san(second), row["Rating"])
    for text, label in zip(data.texts, data.labels.tolist()):
        previous, choices, answer = parse_binary(text)
        fen = previous.split("Position (FEN): ")[1].split("\n")[0]
        i, board, last, target, _ = by_fen[fen]
        assert previous == f"Position (FEN): {fen}\nLast move: {last}"
        coin, order = draws[i]
        assert label == coin == int(choices[answer] == target)
        assert choices.index(target) == order.index(0)  # the target sits where the shuffle put it
        alternative = choices[1 - choices.index(target)]
        assert alternative != target and board.parse_san(alternative) in board.legal_moves
    assert sorted(ds.difficulty()) == sorted(float(r["Rating"]) for r in LICHESS)
    again = LichessPuzzlesBinary(data_files={"train": puzzles}, balance=False, n_test=1).load()
    assert again.texts == data.texts  # the random alternative is seeded
    hub = LichessPuzzlesBinary(data_files=write_csv(tmp_path / "pgn.csv", PGN_ROWS), n_test=2, balance=False)
    with pytest.raises(DataError, match="no difficulty values"):
        hub.difficulty()


def test_binary_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError, match="engine must be the path of a UCI engine"):
        LichessPuzzlesBinary(engine=3)
    missing = LichessPuzzlesBinary(engine=str(tmp_path / "no-such-engine"), n_test=2,
                                   data_files=write_csv(tmp_path / "pgn.csv", PGN_ROWS))  # a config validates anywhere
    with pytest.raises(DataError, match="is not an executable"):
        missing.load()
    with pytest.raises(ConfigError, match="engine_depth must be an integer >= 1"):
        LichessPuzzlesBinary(engine_depth=0)
    path = write_csv(tmp_path / "other.csv", [{"a": 1, "b": 2}] * 4)
    with pytest.raises(DataError, match="Lichess puzzle schema"):
        LichessPuzzlesBinary(data_files=path).load()


def test_both_forms_are_registered():
    from w2s_harness.plugins import datasets as plugin

    from w2s_harness._plugin_system.registry import Registry

    reg = Registry("dataset")
    plugin.w2s_register_datasets(reg)
    assert reg.resolve("lichess_puzzles")[0].factory is LichessPuzzles
    entry = reg.resolve("lichess_puzzles_binary")[0]
    assert entry.factory is LichessPuzzlesBinary and "EleutherAI/w2s's binary form" in entry.description
    assert {"engine", "engine_depth", "format_seed", "balance", "data_files"} <= set(entry.parameters())
