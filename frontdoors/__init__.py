"""Front doors: the ways in. Nothing in the project imports this package."""
