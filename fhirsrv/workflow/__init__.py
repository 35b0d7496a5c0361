"""The inclusion procedure: application, territorial then regional validation, yearly
verification and delisting, with the messages that go with them."""
