"""celeba"""
