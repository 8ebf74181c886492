"""``lichess_puzzles`` (plugins/builtin/datasets/chess_puzzles.py) on real puzzle rows written here, in the Lichess puzzle
database schema and in EleutherAI/lichess-puzzles' (ctx, target). Legality is checked independently with
python-chess: the prompt's FEN is recomputed from the row, every candidate must parse as a legal move there."""

from __future__ import annotations

import numpy as np
import pytest

chess = pytest.importorskip("chess")

from w2s_harness.plugins.datasets.chess_puzzles import LichessPuzzles

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
