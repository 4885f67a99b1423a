from catalog.splits import assign_splits


def units(dataset: str, n: int) -> dict:
    return {(dataset, f"case{i}"): dataset for i in range(n)}


def test_each_dataset_gets_its_own_quota():
    splits = assign_splits({**units("A", 6), **units("B", 3), **units("C", 20)})
    count = lambda d, s: sum(1 for (ds, _), v in splits.items() if ds == d and v == s)  # noqa: E731
    assert (count("A", "train"), count("A", "val"), count("A", "test")) == (4, 1, 1)
    assert (count("B", "train"), count("B", "val"), count("B", "test")) == (3, 0, 0)
    assert (count("C", "train"), count("C", "val"), count("C", "test")) == (16, 2, 2)


def test_splits_are_deterministic_and_independent_of_order():
    forward = assign_splits(units("A", 10))
    backward = assign_splits(dict(reversed(list(units("A", 10).items()))))
    assert forward == backward


def test_at_least_one_unit_stays_in_train():
    assert set(assign_splits(units("A", 1), (0.0, 0.5, 0.5)).values()) == {"train"}
    assert sorted(assign_splits(units("A", 2), (0.0, 0.5, 0.5)).values()) == ["test", "train"]
