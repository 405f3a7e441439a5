"""The annual clean-up of websites' domains and VMs (plan 二(二)1, 开展网站域名、虚拟机清理工作)."""
