"""Review acknowledgements (issue 13): `review` lint findings a reviewer signs off one by one."""

from mailer.reviews.acks import ReviewItem, acknowledge, open_items, review_items

__all__ = ["ReviewItem", "acknowledge", "open_items", "review_items"]
