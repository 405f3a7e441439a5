"""Every rule of DESIGN.md with the clause it comes from, for the rule functions and the policy page.

``clause`` is the short citation a denial carries; ``wording_zh`` quotes the signed paper itself
(the 2017 《校园网络安全综合治理方案》 and its 附件3 《虚拟机服务协议书》), so a reader can check
that the software says what the paper says.
"""

from __future__ import annotations

from policies.base import Rule

_RULES = (
    Rule(
        id="purpose",
        clause="agreement §1; plan 二(二)4",
        summary_en=(
            "A VM hosts only a unit's information system for teaching, research or management; news and "
            "publicity websites go to the site-cluster platform, and nothing is lent to a person."
        ),
        summary_zh="虚拟机仅用于单位的教学、科研、管理类信息系统；新闻宣传网站通过站点群平台建站；不对个人分配虚拟机。",
        wording_zh=(
            "乙方申请的虚拟机限定用于存放信息系统，新闻性质的网站需通过站点群平台建站。"
            "信息中心从即日起，仅对各单位用于教学、科研、管理用途的信息系统分配虚拟机，不再对新闻网站或个人分配虚拟机。"
        ),
    ),
    Rule(
        id="paperwork",
        clause="plan 二(一); agreement §3",
        summary_en=(
            "A unit may request VMs only with a complete contact registry and a signed security "
            "commitment letter and VM service agreement on file."
        ),
        summary_zh="单位须报送完整的《网络安全联络通讯录》，并签署《网络安全承诺书》和《虚拟机服务协议书》后方可申请虚拟机。",
        wording_zh=(
            "各单位需填报《网络安全联络通讯录》（附件1），主要负责人需签订《中国矿业大学网络安全承诺书》(附件2)"
            "和《中国矿业大学虚拟机服务协议书》（附件3）"
        ),
    ),
    Rule(
        id="provisioning_deadline",
        clause="agreement §3",
        summary_en=(
            "The center opens the VM within 7 calendar days of the later of the request's submission "
            "and the agreement's filing."
        ),
        summary_zh="信息中心在申请提交与协议书报送两者中较晚者之后7个自然日内开通虚拟机。",
        wording_zh="甲方在乙方提交虚拟机服务申请表和协议书后一周内为乙方开通虚拟机。",
    ),
    Rule(
        id="credentials_once",
        clause="agreement §4",
        summary_en=(
            "The unit's security administrator receives the VM's IP address, admin account and initial "
            "password once; the center keeps no way to show or recover the password."
        ),
        summary_zh="虚拟机的IP地址、管理员账号和初始密码只向本单位网络安全管理员提供一次；信息中心不提供恢复密码服务。",
        wording_zh=(
            "甲方为乙方开通虚拟机后，向乙方提供虚拟机的IP地址和管理员账号及初始密码，乙方自行妥善保管，"
            "后期可更换账号和密码，甲方不提供恢复密码服务。"
        ),
    ),
    Rule(
        id="power_ops",
        clause="plan 二(二)4",
        summary_en=(
            "Only the unit's security administrators, and the center, start, stop and restart a unit's VMs."
        ),
        summary_zh="单位虚拟机的开机、关机、重启仅由本单位网络安全管理员及信息中心操作。",
        wording_zh="各单位所属虚拟机的重启、开机、关机操作，由各单位的网络安全管理员统一负责",
    ),
    Rule(
        id="suspended_lock",
        # DESIGN.md writes "plan 三3"; the plan has no top-level 三, the clause is 二(三)3.
        clause="agreement §8; plan 二(三)3",
        summary_en=(
            "A VM suspended for security cannot be started, reconnected or released by its unit; the "
            "center restores it after verifying the unit's rectification report."
        ),
        summary_zh="因安全问题被暂停的虚拟机，单位不能自行开机、恢复网络或解除暂停；信息中心核实整改报告后恢复。",
        wording_zh=(
            "甲方有权暂时关闭服务器直到乙方解决为止。"
            "相关单位应深入查找薄弱环节，及时整改修复，并将整改报告报送信息中心，信息中心确定安全隐患消除后恢复WEB服务。"
        ),
    ),
    Rule(
        id="compromise",
        clause="agreement §8",
        summary_en=(
            "A VM found carrying a virus, trojan, webshell or backdoor, or attacking others, is contained "
            "automatically as the center configures; weak signals go to a human instead."
        ),
        summary_zh="发现虚拟机中病毒、木马、webshell、后门或对外攻击时，按信息中心配置自动处置；弱信号转人工研判。",
        wording_zh=(
            "甲方如发现乙方虚拟机因存在中病毒、木马、主动或被动攻击等安全问题影响校园网络正常运行，及时向乙方反馈，"
            "甲方有权暂时关闭服务器直到乙方解决为止。"
        ),
    ),
    Rule(
        id="forbidden_services",
        clause="agreement §6",
        summary_en="No proxy, forum, mail or DNS service on a VM without the center's approval.",
        summary_zh="未经信息中心同意，严禁在虚拟机上私设代理、论坛、邮件、DNS等服务。",
        wording_zh=(
            "未经有关部门同意，严禁在服务器上私设代理、论坛、邮件、DNS等类似的服务。"
            "若发生以上现象经查明后，甲方有权关闭虚拟机"
        ),
    ),
    Rule(
        id="quota",
        # The paper sets no quota: this is the center's own resource policy (DESIGN cites no clause).
        clause="center quota policy",
        summary_en=(
            "A request over the unit's quota (VMs, vCPUs, memory, disk) is refused unless a center "
            "administrator overrides it with a recorded reason."
        ),
        summary_zh="超出单位资源配额（虚拟机数、vCPU、内存、磁盘）的申请不予受理，除非信息中心管理员记录理由后批准超配。",
    ),
    Rule(
        id="maintenance_notice",
        clause="agreement §9",
        summary_en="Planned outages by the center are announced to the affected units in advance.",
        summary_zh="信息中心因工作需要造成的计划停机须提前通知受影响单位。",
        wording_zh="如甲方因工作需要，对网络重新调整造成的服务中断，甲方会提前通知乙方",
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
