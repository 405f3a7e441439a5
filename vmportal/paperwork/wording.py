# The paper's sentences stay unbroken, so each can be found in the seed with one search.
# ruff: noqa: E501
"""The words of the forms, exactly as the 2017 《校园网络安全综合治理方案》 prints them (附件2, 附件3).

Kept here, word for word and with the clauses' own numbering ("1、" …), so the PDFs say what the paper
the units signed says, including its quirks (the agreement's "由于网络安全设备" and "生效.两份"): a
signed copy is compared with the original, and a silent correction would make them differ. Change
these only when the committee issues a new version of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Clause:
    number: str  # "1、" as printed
    text: str


UNIVERSITY = "中国矿业大学"
CENTER = "网络与信息中心"

COMMITMENT_ANNEX = "附件2"
COMMITMENT_TITLE = "中国矿业大学网络安全承诺书"
COMMITMENT_ADDRESSEE = "网络安全工作委员会："
COMMITMENT_PREAMBLE = "本单位郑重承诺遵守本承诺书的有关条款，如有违反本承诺书有关条款的行为，由本单位承担由此带来的一切民事、行政和刑事责任。"
COMMITMENT_CLAUSES: tuple[Clause, ...] = (
    Clause(
        "1、",
        "本单位承诺遵守《中华人民共和国计算机信息系统安全保护条例》、《计算机信息网络国际联网安全保护管理办法》和《信息安全等级保护管理办法》、《网络安全法》及其他国家有关法律、法规和行政规章制度。",
    ),
    Clause("2、", "本单位已知悉并承诺执行学校《中国矿业大学网络信息安全管理办法（试行）》的文件规定。"),
    Clause(
        "3、",
        "本单位保证不利用网络危害国家安全、泄露国家秘密，不侵犯国家的、社会的、集体的利益和第三方的合法权益，不从事违法犯罪活动。",
    ),
    Clause("4、", "本单位承诺建立健全各项网络安全管理制度和落实各项安全保护技术措施。"),
    Clause(
        "5、",
        "本单位承诺加强终端计算机安全，落实软件正版化，推进具有自主知识产权的软硬件应用，规范工作人员的使用行为。",
    ),
    Clause("6、", "本单位承诺规范本单位数据采集和使用，不采集超越职能范围的数据，保障数据安全。"),
    Clause("7、", "本单位承诺提升应急响应能力，制定本单位应急预案，组织开展应急演练。"),
    Clause("8、", "本单位承诺对本单位的信息系统进行安全监测，并对监测发现和通报的安全问题进行限时整改。"),
    Clause(
        "9、",
        "本单位承诺加强信息技术安全教育，组织工作人员参加培训，提高管理人员的安全意识和技术人员的防护能力。",
    ),
    Clause(
        "10、",
        "本单位承诺当信息系统发生信息技术安全事件，迅速进行报告与处置，将损害和影响降到最小范围，并按照要求及时进行整改。",
    ),
    Clause(
        "11、",
        "若违反本承诺书有关条款和国家相关法律法规的，本单位直接承担相应法律责任，造成财产损失的，由本单位直接赔偿。",
    ),
    Clause("12、", "本承诺书自签署之日起生效。"),
)

AGREEMENT_ANNEX = "附件3"
AGREEMENT_TITLE = "中国矿业大学虚拟机服务协议书"
AGREEMENT_PARTY_A = "网络与信息中心"
AGREEMENT_PREAMBLE = "为了方便学校各二级单位建立用于公共教学、管理、科研用途的业务系统，节省购买服务器与存储的费用以及后续能耗费，甲方为乙方（不包括个人）免费提供虚拟机租用服务。为明确甲、乙双方的责任、义务，特签定本协议。"
AGREEMENT_CLAUSES: tuple[Clause, ...] = (
    Clause("1、", "乙方申请的虚拟机限定用于存放信息系统，新闻性质的网站需通过站点群平台建站。"),
    Clause(
        "2、",
        "甲方数据中心机房提供高速可靠的网络接入和标准动力环境，所有虚拟机由于网络安全设备提供集中安全防护。",
    ),
    Clause("3、", "甲方在乙方提交虚拟机服务申请表和协议书后一周内为乙方开通虚拟机。"),
    Clause(
        "4、",
        "甲方为乙方开通虚拟机后，向乙方提供虚拟机的IP地址和管理员账号及初始密码，乙方自行妥善保管，后期可更换账号和密码，甲方不提供恢复密码服务。如乙方遗忘、外泄密码而造成的损失，由乙方自行承担责任。",
    ),
    Clause("5、", "甲方为乙方提供初次操作系统的安装，应用软件乙方可通过远程桌面自行安装。"),
    Clause(
        "6、",
        "乙方利用虚拟机存储和发布的信息必须遵守国家相关的法律法规，未经有关部门同意，严禁在服务器上私设代理、论坛、邮件、DNS等类似的服务。若发生以上现象经查明后，甲方有权关闭虚拟机，情节严重的上报学校或移交公安机关处理。",
    ),
    Clause(
        "7、",
        "乙方负责虚拟机上操作系统和应用程序的安全防护和补丁更新，自行备份网站数据，如虚拟机因乙方维护不当或被黑客攻击，导致虚拟机崩溃、网站数据被篡改或丢失，乙方自行承担损失。",
    ),
    Clause(
        "8、",
        "甲方如发现乙方虚拟机因存在中病毒、木马、主动或被动攻击等安全问题影响校园网络正常运行，及时向乙方反馈，甲方有权暂时关闭服务器直到乙方解决为止。",
    ),
    Clause(
        "9、",
        "如因线路故障、停电、自然灾害等不可抗力因素造成的虚拟机服务中断，甲方不承担责任；如甲方因工作需要，对网络重新调整造成的服务中断，甲方会提前通知乙方，乙方必须无条件配合，不得追究甲方责任。",
    ),
    Clause(
        "10、",
        "乙方自行解决虚拟机上所安装的软件版权，乙方对使用虚拟机所引起的任何经济、政治、法律等纠纷负完全责任，与甲方没有任何关系，甲方也不应对此或对第三方承担任何责任或者义务。",
    ),
    Clause("11、", "本协议一式两份，甲乙双方各执一份，自签字之日起生效.两份具有同等法律效力。"),
)

# The signature block under both papers.
SIGNATURE_HEAD = "主要负责人（签字）"
SIGNATURE_STAMP = "单位盖章"
