"""`make bench`: the benchmark tables (content checks so far)."""

from bench import content

if __name__ == "__main__":
    content.run(print_table=True)
